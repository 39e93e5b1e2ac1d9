/**
 * Moving a running VM to another host: live (pre-copy while it runs, its disks mirrored over NBD
 * when the target cannot reach them) or quick (suspended to a state file on shared storage,
 * resumed on the target). The order keeps one rule: the VM's CPUs run on one host at a time, and
 * the inventory names exactly one host — the source until the target runs it, then the target.
 */
import { TernError } from '../../errors.ts';
import type { AgentVm, MigrationMode, MigrationReport } from '../../wire/agent.ts';
import type { ClusterSettings } from '../../wire/cluster.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';
import { groupsOfVm } from '../cluster/inventory.ts';
import type { Placer } from '../cluster/placer.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { AgentClient } from '../hosts/agent-client.ts';
import { supportsModel } from '../placement/cpu-models.ts';
import type { VmDemand } from '../placement/model.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { loadVm, type VmDeps } from '../vms/deps.ts';
import { moveDemand } from './demand.ts';
import { cpuMismatch, type MovePlan, planMove } from './plan.ts';

export type MigrationDeps = VmDeps;

export interface MigrateParams {
  vmId: string;
  from: string;
  to: string;
  mode: MigrationMode;
  targetPool?: string;
  downtimeMs: number;
  bandwidthMiBps: number;
  timeoutS: number;
}

export interface MigrateOptions {
  to?: string;
  mode?: MigrationMode;
  targetPool?: string;
  downtimeMs?: number;
  bandwidthMiBps?: number;
  timeoutS?: number;
}

export interface MigrationOutcome {
  from: string;
  to: string;
  mode: MigrationMode;
  storage: 'shared' | 'mirror';
  /** Source CPUs stopped until target CPUs ran, as the two hosts' clocks saw it. */
  downtimeMs: number;
  /** QEMU's own figure for the final copy. */
  qemuDowntimeMs: number;
  transferredBytes: number;
  totalMs: number;
}

/** What placement needs to find a target for a VM that runs on `from` now. */
export async function migrationDemand(
  deps: MigrationDeps,
  vmId: string,
  opts: { mode: MigrationMode; targetPool?: string },
): Promise<{
  demand: VmDemand;
  spec: VmSpec;
  from: string;
  snapshot: Awaited<ReturnType<Placer['snapshot']>>;
}> {
  const { row, spec } = await loadVm(deps, vmId);
  const snapshot = await deps.placer.snapshot(vmId);
  const demand = moveDemand(
    { ...row, hostId: row.hostId! },
    spec,
    snapshot,
    await groupsOfVm(deps.db, vmId),
    opts.targetPool,
  );
  if (!demand) throw new TernError('unavailable', `the host of VM ${row.name} has not reported its facts`);
  return { demand, spec, from: row.hostId!, snapshot };
}

/** Checks a move before it starts, so a refusal comes back at once with its reason. */
export async function planMigration(
  deps: MigrationDeps,
  vmId: string,
  opts: MigrateOptions,
  settings: ClusterSettings,
): Promise<{ params: MigrateParams; plan: MovePlan & { ok: true } }> {
  const mode = opts.mode ?? 'live';
  const vm = await deps.store.get(vmId);
  if (vm.state !== 'running')
    throw new TernError('conflict', `VM ${vm.name} is ${vm.state}; only a running VM migrates`);
  const { demand, spec, from, snapshot } = await migrationDemand(deps, vmId, {
    mode,
    targetPool: opts.targetPool,
  });
  let to: string;
  if (opts.to) {
    const target = await deps.hosts.get(opts.to);
    if (target.id === from)
      throw new TernError('conflict', `VM ${vm.name} already runs on host ${target.name}`);
    const verdict = (await deps.placer.explain({ ...demand, exclude: [from] }, snapshot)).verdicts.find(
      (v) => v.hostId === target.id,
    );
    if (!verdict?.eligible) {
      throw new TernError(
        'conflict',
        `host ${target.name} cannot take VM ${vm.name}: ${verdict?.reason ?? 'unknown host'}`,
        {
          filter: verdict?.filter,
        },
      );
    }
    to = target.id;
  } else {
    to = await deps.placer.choose(demand, snapshot, `VM ${vm.name}`);
  }
  const source = snapshot.facts.get(from)!;
  const target = snapshot.facts.get(to)!;
  const row = await deps.store.row(vmId);
  if (row.cpuMode === 'host') {
    const why = cpuMismatch(source, target);
    if (why)
      throw new TernError(
        'conflict',
        `VM ${vm.name} uses the host CPU and may only move to an identical one: ${why}`,
      );
  } else {
    const fit = supportsModel(
      { vendor: target.cpuVendor, model: target.cpuModel, flags: target.cpuFlags },
      spec.cpuModel,
    );
    if (spec.cpuModel !== 'host' && spec.cpuModel !== 'max' && !fit.ok) {
      throw new TernError(
        'conflict',
        `host ${target.hostname} cannot run CPU model ${spec.cpuModel}: missing ${fit.missing.join(' ')}`,
      );
    }
  }
  const plan = planMove(spec, source, target, { mode, targetPool: opts.targetPool });
  if (!plan.ok) throw new TernError('conflict', `VM ${vm.name} cannot move: ${plan.reason}`);
  return {
    plan,
    params: {
      vmId,
      from,
      to,
      mode,
      ...(opts.targetPool ? { targetPool: opts.targetPool } : {}),
      downtimeMs: opts.downtimeMs ?? settings.migrationDowntimeMs,
      bandwidthMiBps: opts.bandwidthMiBps ?? settings.migrationBandwidthMiBps,
      timeoutS: opts.timeoutS ?? settings.migrationTimeoutS,
    },
  };
}

const mib = (n: number) => `${Math.round(n / 1024 / 1024)} MiB`;

/**
 * Progress for the task: the percentage always, and every two seconds a step that says what
 * moves (transferred of total, speed, dirty rate, expected downtime), which the CLI shows.
 * Failures to record progress never stop the migration; cancellation goes through the signal.
 */
function reporter(ctx: TaskContext, storage: 'shared' | 'mirror') {
  let lastStep = 0;
  return (r: MigrationReport) => {
    if (r.type !== 'progress') return;
    const fraction = r.totalBytes > 0 ? Math.min(1, r.transferredBytes / r.totalBytes) : 0;
    const [from, span] = r.phase === 'disks' ? [5, 45] : storage === 'mirror' ? [50, 45] : [5, 90];
    const percent = Math.round(from + fraction * span);
    if (Date.now() - lastStep < 2000) {
      ctx.progress(percent).catch(() => {});
      return;
    }
    lastStep = Date.now();
    const downtime =
      r.expectedDowntimeMs === null ? '' : `, expected downtime ${Math.round(r.expectedDowntimeMs)} ms`;
    ctx
      .step(
        `${r.phase}: ${mib(r.transferredBytes)} of ${mib(r.totalBytes)} at ${r.speedMiBps.toFixed(1)} MiB/s, dirty ${mib(r.dirtyBytesPerS)}/s${downtime}`,
        percent,
      )
      .catch(() => {});
  };
}

function hostOf(address: string): string {
  return new URL(address).hostname.replace(/^\[|\]$/g, '');
}

/** Carries out a planned migration; used by the migrate task and by host evacuation. */
export async function migrateVm(
  deps: MigrationDeps,
  ctx: TaskContext,
  p: MigrateParams,
): Promise<MigrationOutcome> {
  const started = Date.now();
  const { row, spec } = await loadVm(deps, p.vmId);
  if (row.hostId === p.to) throw new TernError('conflict', `VM ${row.name} already runs on the target host`);
  if (row.hostId !== p.from)
    throw new TernError('conflict', `VM ${row.name} moved while the migration waited`);
  if (row.state !== 'running')
    throw new TernError('conflict', `VM ${row.name} is ${row.state}; only a running VM migrates`);
  const snapshot = await deps.placer.snapshot(p.vmId);
  const sourceFacts = snapshot.facts.get(p.from);
  const targetFacts = snapshot.facts.get(p.to);
  if (!sourceFacts || !targetFacts)
    throw new TernError('unavailable', 'a host of the migration has not reported its facts');
  const plan = planMove(spec, sourceFacts, targetFacts, { mode: p.mode, targetPool: p.targetPool });
  if (!plan.ok) throw new TernError('conflict', `VM ${row.name} cannot move: ${plan.reason}`);
  const src = deps.hosts.client(p.from);
  const dst = deps.hosts.client(p.to);
  const [fromHost, toHost] = [await deps.hosts.get(p.from), await deps.hosts.get(p.to)];
  await ctx.log(
    `moving ${row.name} from ${fromHost.name} to ${toHost.name} (${p.mode}, ${plan.storage} storage)`,
  );
  const limits = {
    downtimeLimitMs: p.downtimeMs,
    bandwidthMiBps: p.bandwidthMiBps,
    autoConverge: true,
    timeoutS: p.timeoutS,
  };
  const onReport = reporter(ctx, plan.storage);
  let done: MigrationReport & { type: 'done' };
  if (p.mode === 'live') {
    const create = [];
    for (const m of plan.mirrored) {
      const info = await src.volumeInfo(m.from);
      if (!info)
        throw new TernError(
          'not_found',
          `volume ${m.from.pool}:${m.from.path} is missing on ${fromHost.name}`,
        );
      create.push({ volume: m.to, format: m.format, sizeBytes: info.virtualBytes });
    }
    await ctx.step('preparing the target', 3);
    const incoming = await dst.prepareIncoming({
      spec: plan.spec,
      mode: 'live',
      storage: plan.storage,
      listenHost: hostOf(toHost.address),
      ...(create.length > 0 ? { create } : {}),
    });
    await ctx.step(plan.storage === 'mirror' ? 'mirroring disks, then memory' : 'sending memory', 5);
    done = await src.migrate(
      p.vmId,
      { mode: 'live', uri: incoming.uri, ...(incoming.nbd ? { nbd: incoming.nbd } : {}), ...limits },
      onReport,
      ctx.signal,
    );
  } else {
    const stateFile = stateFileFor(sourceFacts, targetFacts, p.vmId);
    if (!stateFile)
      throw new TernError(
        'conflict',
        'quick migration needs a shared pool both hosts see for the state file',
      );
    await ctx.step('suspending to a state file', 5);
    done = await src.migrate(p.vmId, { mode: 'quick', stateFile, ...limits }, onReport, ctx.signal);
    await ctx.step('loading the state on the target', 60);
    await dst.prepareIncoming({
      spec: plan.spec,
      mode: 'quick',
      storage: 'shared',
      listenHost: hostOf(toHost.address),
      stateFile,
    });
  }
  // The guest is down from here until the target resumes it: nothing else on this path. The
  // target resumes only now, once the source said the migration completed (as libvirt's confirm
  // phase does): QEMU may still fail a migration on the source, and restart the guest there,
  // after the target received the whole state.
  const finished = await dst.finishIncoming(p.vmId);
  // The inventory names the target before the source lets go: the source's `gone` then
  // concerns a VM that is no longer its own.
  await commitMove(deps, p.vmId, p.to, plan.spec, finished.vm);
  // The move is done whatever the source still holds: the log says what that is.
  await releaseSource(
    deps,
    p.from,
    p.vmId,
    plan.mirrored.map((m) => m.from),
  ).catch((err: Error) => ctx.log(`the VM moved, but ${err.message}`));
  const outcome: MigrationOutcome = {
    from: fromHost.name,
    to: toHost.name,
    mode: p.mode,
    storage: plan.storage,
    downtimeMs: Math.max(0, finished.resumedAt - done.stoppedAt),
    qemuDowntimeMs: done.downtimeMs,
    transferredBytes: done.transferredBytes,
    totalMs: Date.now() - started,
  };
  await ctx.log(
    `done in ${(outcome.totalMs / 1000).toFixed(1)} s: downtime ${outcome.downtimeMs} ms (QEMU: ${outcome.qemuDowntimeMs} ms), ${mib(outcome.transferredBytes)} sent`,
  );
  return outcome;
}

/** A file in a pool both hosts share, where a quick migration leaves the VM's state. */
function stateFileFor(
  source: { pools: { name: string; shared: boolean }[] },
  target: { pools: { name: string; shared: boolean }[] },
  vmId: string,
): VolumeRef | null {
  const pool = source.pools.find((p) => p.shared && target.pools.some((t) => t.name === p.name && t.shared));
  return pool ? { pool: pool.name, path: `migrations/${vmId}.state` } : null;
}

/** From here on the inventory names the target: the VM runs there. */
async function commitMove(
  deps: MigrationDeps,
  vmId: string,
  to: string,
  spec: VmSpec,
  reported: Parameters<MigrationDeps['store']['applyReport']>[2],
): Promise<void> {
  await deps.store.update(vmId, { hostId: to, spec: JSON.stringify(spec) });
  await deps.store.applyReport(to, vmId, reported);
}

/**
 * The source's stopped copy goes, and with it the volumes that were copied away; throws naming
 * what the source still holds.
 */
async function releaseSource(
  deps: MigrationDeps,
  from: string,
  vmId: string,
  copied: VolumeRef[],
): Promise<void> {
  const src = deps.hosts.client(from);
  const undo = new Undo();
  await undo.step('release the VM on the source', () => src.releaseMigrated(vmId));
  for (const ref of copied)
    await undo.step(`remove ${ref.pool}:${ref.path} from the source`, () => src.deleteVolume(ref));
  undo.done();
}

/**
 * After a failure, cancellation or manager crash: whichever host really runs the VM wins. If the
 * target already runs it, the move is completed; otherwise the target's waiting copy goes and the
 * source's copy runs again. Throws naming what could not be settled.
 */
export async function settleMigration(
  deps: MigrationDeps,
  ctx: TaskContext,
  p: MigrateParams,
): Promise<void> {
  const row = await deps.store.row(p.vmId).catch(() => null);
  if (!row) return;
  const src: AgentClient = deps.hosts.client(p.from);
  const dst: AgentClient = deps.hosts.client(p.to);
  if (row.hostId === p.to) return releaseSource(deps, p.from, p.vmId, []);
  const undo = new Undo();
  let onTarget: AgentVm | null;
  try {
    onTarget = await dst.getVm(p.vmId);
  } catch (err) {
    // Whether the target runs the VM is unknown: resuming it on the source could run it twice.
    undo.fail('ask the target whether it runs the VM (it is not resumed on the source)', err);
    return undo.done();
  }
  if (onTarget?.state === 'running') {
    await ctx.log('the target already runs the VM; completing the move');
    const snapshot = await deps.placer.snapshot(p.vmId);
    const plan = planMove(vmSpecOf(row), snapshot.facts.get(p.from)!, snapshot.facts.get(p.to)!, {
      mode: p.mode,
      targetPool: p.targetPool,
    });
    if (plan.ok) {
      await commitMove(deps, p.vmId, p.to, plan.spec, onTarget);
      return releaseSource(
        deps,
        p.from,
        p.vmId,
        plan.mirrored.map((m) => m.from),
      );
    }
  }
  await undo.step('clear the target', () => dst.abortIncoming(p.vmId));
  await undo.step('resume the VM on the source', async () => {
    const onSource = await src.getVm(p.vmId);
    if (onSource?.state !== 'paused') return;
    await ctx.log('resuming the VM on the source');
    const vm = await src.act(p.vmId, 'resume');
    await deps.store.applyReport(p.from, p.vmId, vm);
  });
  undo.done();
}

export function migrateTask(deps: MigrationDeps): TaskKind<MigrateParams> {
  return {
    kind: 'vm.migrate',
    onInterrupt: 'fail',
    run: (ctx, p) => migrateVm(deps, ctx, p),
    cleanup: (ctx, p) => settleMigration(deps, ctx, p),
  };
}
