/**
 * Restarting the protected VMs of a failed host on the others. The host was declared failed only
 * after both its heartbeat and its lease were silent for longer than it takes it to fence, so
 * its copies are dead; QEMU's image locks are a second guard where the storage shares them (a
 * copy still holding its disk makes the new start fail rather than run twice). Each VM it moves
 * records the failed host (`haRestartFrom`) until the failover has seen it run: a start that
 * failed on the new host is tried again, and after a manager restart the task resumes with the
 * VMs it moved, never moving one twice. It ends when every protected VM of the host runs again.
 */
import type { VmHaPolicy } from '../../wire/ha.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { VmTable } from '../db/schema.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import { startVm } from '../vms/power.ts';
import { acknowledgedVms, isProtected } from './assignment.ts';
import { haVms } from './protected.ts';
import { planRestarts, type RestartStep, retryDelayMs, waves } from './restart-plan.ts';

export interface FailoverParams {
  hostId: string;
}

export interface FailoverOutcome {
  host: string;
  restarted: { vm: string; on: string }[];
  notRestarted: { vm: string; reason: string }[];
}

/** Restarts in flight at once: enough to start a host's worth of VMs quickly, few enough not to swamp the survivors. */
const parallelStarts = 8;
const restartingReason = 'restarting: its host failed';

/** A wait that ends early on cancel, and never holds a stopping manager's process open. */
const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms).unref();
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

const strandedAlert = (vmId: string) => `vm:${vmId}:ha-stranded`;

/** Runs `jobs` with at most `limit` in flight. */
async function inParallel(jobs: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) await jobs[next++]();
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
}

interface Round {
  restarted: { vmId: string; name: string; on: string }[];
  /** `restart` VMs that did not start: tried again. */
  unplaced: { vmId: string; name: string; reason: string }[];
  /** `best-effort` VMs that did not: only this once. */
  skipped: { vmId: string; name: string; reason: string }[];
  /** Protected, but not as far as the host knew: never restarted automatically. */
  unconfirmed: { vmId: string; name: string; reason: string }[];
}

const live = (state: string) => state === 'running' || state === 'paused';

async function restartRound(
  deps: FailoverDeps,
  ctx: TaskContext,
  failedId: string,
  failedIsBack: boolean,
): Promise<Round> {
  const out: Round = { restarted: [], unplaced: [], skipped: [], unconfirmed: [] };
  // The failed host's VMs, and the ones this failover moved that it has not seen run yet (a
  // start that failed, or a manager restart in the middle of one).
  const rows = await deps.db
    .selectFrom('vms')
    .selectAll()
    .where((eb) => eb.or([eb('hostId', '=', failedId), eb('haRestartFrom', '=', failedId)]))
    .execute();
  const policies = new Map(
    rows.map((r) => [r.id, r.haPolicy ? (JSON.parse(r.haPolicy) as VmHaPolicy) : null]),
  );
  const policyOf = (vmId: string) => policies.get(vmId) ?? null;
  const finish = (vmId: string) =>
    deps.db.updateTable('vms').set({ haRestartFrom: null }).where('id', '=', vmId).execute();
  const moved = rows.filter((r) => r.haRestartFrom === failedId);
  const resumed: VmTable[] = [];
  for (const r of moved) {
    const policy = policyOf(r.id);
    if (live(r.state) || !isProtected(policy)) {
      // Running (this failover saw it start, or someone started it), or no longer protected.
      await finish(r.id);
      if (live(r.state)) out.restarted.push({ vmId: r.id, name: r.name, on: await hostName(deps, r.hostId) });
    } else {
      resumed.push(r);
    }
  }
  // Whatever the inventory last heard, the copies on a failed host that it confirmed it
  // protects are dead (it has fenced); once the host is back, the ones it reports running are
  // its own restarts. A VM another failover moved here and has not seen run is that one's.
  const acknowledged = await acknowledgedVms(deps.db, failedId);
  const protectedRows = rows.filter(
    (r) =>
      r.hostId === failedId &&
      r.haRestartFrom === null &&
      isProtected(policyOf(r.id)) &&
      !(failedIsBack && r.state === 'running'),
  );
  const candidates = protectedRows.filter((r) => acknowledged.has(r.id));
  for (const r of protectedRows) {
    if (acknowledged.has(r.id)) continue;
    // Protected after the host last heard from the manager: its fence may not have killed it.
    out.unconfirmed.push({
      vmId: r.id,
      name: r.name,
      reason:
        'its host never confirmed protecting it, so it may still run there: start it by hand once the host is known to be off',
    });
  }
  const nameOf = (vmId: string) => rows.find((r) => r.id === vmId)!.name;
  const notStarted = async (vmId: string, reason: string) => {
    const entry = { vmId, name: nameOf(vmId), reason };
    if (policyOf(vmId)?.restart === 'restart') out.unplaced.push(entry);
    else {
      out.skipped.push(entry);
      await finish(vmId); // best effort: tried once
    }
  };
  /** Starts a VM this failover moved, and records it done once it runs. */
  const start = async (vmId: string) => {
    try {
      const vm = await startVm(deps, ctx, vmId, { haRestart: true });
      await finish(vmId);
      out.restarted.push({ vmId, name: nameOf(vmId), on: vm.host ?? '' });
    } catch (err) {
      await ctx.log(`${nameOf(vmId)} did not start: ${(err as Error).message}`);
      await notStarted(vmId, (err as Error).message);
    }
  };
  // Moved before and not running yet: started again where they are, or where placement says
  // when that host cannot take them (startVm never moves one its host may still run).
  await inParallel(
    resumed.map((r) => () => start(r.id)),
    parallelStarts,
  );
  if (candidates.length === 0) return out;
  const snapshot = await deps.placer.snapshot();
  const vms = await haVms(deps.db, snapshot, candidates);
  const steps = planRestarts({
    // A failed host that is back (healthy to the HA watch) takes its VMs again like any other.
    failedHostIds: [failedId],
    vms,
    survivors: snapshot.hosts.filter((h) => h.id !== failedId || failedIsBack),
    policy: await deps.placer.settings.policy(),
    atMs: Date.now(),
  });
  const restartOne = async (step: RestartStep) => {
    if (step.hostId === null) {
      await notStarted(step.vmId, step.reason ?? 'no host fits');
      return;
    }
    const wait = step.notBeforeMs - Date.now();
    if (wait > 0) await sleep(wait, ctx.signal);
    ctx.throwIfCancelled();
    const target = await deps.hosts.get(step.hostId);
    await ctx.log(`restarting ${nameOf(step.vmId)} on ${target.name}`);
    // The inventory names the new host first: the failed one no longer speaks for this VM.
    await deps.store.update(step.vmId, {
      hostId: step.hostId,
      state: 'stopped',
      stateReason: restartingReason,
      haRestartFrom: failedId,
    });
    await start(step.vmId);
  };
  for (const wave of waves(steps, (id) => policies.get(id)!)) {
    await inParallel(
      wave.map((step) => () => restartOne(step)),
      parallelStarts,
    );
  }
  return out;
}

async function hostName(deps: FailoverDeps, hostId: string | null): Promise<string> {
  return hostId ? (await deps.hosts.get(hostId)).name : '';
}

export type FailoverDeps = VmDeps & { alerts: AlertStore };

/**
 * `isBack(hostId)`: whether the failed host is healthy again to the HA watch; its VMs that
 * found no other room may then start there.
 */
export function failoverTask(
  deps: FailoverDeps,
  isBack: (hostId: string) => boolean,
): TaskKind<FailoverParams> {
  return {
    kind: 'ha.failover',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const host = await deps.hosts.get(p.hostId);
      const out: FailoverOutcome = { host: host.name, restarted: [], notRestarted: [] };
      const stranded = (u: { vmId: string; name: string }, what: string) =>
        deps.alerts.raise({
          id: strandedAlert(u.vmId),
          severity: 'critical',
          object: `vm:${u.vmId}`,
          message: `VM ${u.name} ${what}`,
        });
      await ctx.step(`restarting the protected VMs of ${host.name}`, 5);
      // Until every protected VM of the host runs again: a VM that finds no room waits for
      // some (a host back, a VM stopped), retried with backoff, and is alerted meanwhile.
      for (let attempt = 1; ; attempt++) {
        const round = await restartRound(deps, ctx, p.hostId, isBack(p.hostId));
        for (const r of round.restarted) {
          out.restarted.push({ vm: r.name, on: r.on });
          await deps.alerts.clear(strandedAlert(r.vmId));
        }
        for (const u of round.skipped) {
          await ctx.log(`best effort: ${u.name} not restarted: ${u.reason}`);
          out.notRestarted.push({ vm: u.name, reason: u.reason });
        }
        for (const u of attempt === 1 ? round.unconfirmed : []) {
          await ctx.log(`${u.name} not restarted: ${u.reason}`);
          out.notRestarted.push({ vm: u.name, reason: u.reason });
          await stranded(u, `was not restarted after host ${host.name} failed: ${u.reason}`);
        }
        if (round.unplaced.length === 0) break;
        const retryMs = retryDelayMs(attempt);
        for (const u of round.unplaced) {
          await ctx.log(
            `cannot restart ${u.name} yet: ${u.reason}; trying again in ${Math.round(retryMs / 1000)} s`,
          );
          await stranded(u, `did not restart after host ${host.name} failed: ${u.reason}; retrying`);
        }
        await sleep(retryMs, ctx.signal);
        ctx.throwIfCancelled();
      }
      return out;
    },
    async cleanup(_ctx, p) {
      // Cancelled or failed: its unfinished restarts are stopped VMs on their new hosts now,
      // which another failover may restart (none does while this one holds them).
      await deps.db
        .updateTable('vms')
        .set({ haRestartFrom: null })
        .where('haRestartFrom', '=', p.hostId)
        .execute();
    },
  };
}
