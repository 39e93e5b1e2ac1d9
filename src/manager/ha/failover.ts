/**
 * Restarting the protected VMs of a failed host on the others. The host was declared failed only
 * after both its heartbeat and its lease were silent for longer than it takes it to fence, so
 * its copies are dead; QEMU's image locks are a second guard (a copy still holding its disk
 * makes the new start fail rather than run twice). The task resumes after a manager restart: a
 * VM already moved is not moved again, and one moved but not yet running is started.
 */
import type { VmHaPolicy } from '../../wire/ha.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import { startVm } from '../vms/power.ts';
import { isProtected } from './assignment.ts';
import { haVms } from './protected.ts';
import { planRestarts, retryDelayMs } from './restart-plan.ts';

export interface FailoverParams {
  hostId: string;
}

export interface FailoverOutcome {
  host: string;
  restarted: { vm: string; on: string }[];
  notRestarted: { vm: string; reason: string }[];
}

/** Attempts at placing the VMs that found no room, with backoff, before the task gives up. */
const maxRounds = 4;

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

async function restartRound(deps: VmDeps, ctx: TaskContext, failedId: string, out: FailoverOutcome) {
  const rows = await deps.db.selectFrom('vms').selectAll().where('hostId', '=', failedId).execute();
  const candidates = rows.filter((r) =>
    isProtected(r.haPolicy ? (JSON.parse(r.haPolicy) as VmHaPolicy) : null),
  );
  if (candidates.length === 0) return [];
  const snapshot = await deps.placer.snapshot();
  const vms = await haVms(deps.db, snapshot, candidates);
  const steps = planRestarts({
    failedHostIds: [failedId],
    vms,
    survivors: snapshot.hosts.filter((h) => h.id !== failedId),
    policy: await deps.placer.settings.policy(),
    atMs: Date.now(),
  });
  const unplaced: { vmId: string; reason: string }[] = [];
  for (const step of steps) {
    ctx.throwIfCancelled();
    const row = rows.find((r) => r.id === step.vmId)!;
    if (step.hostId === null) {
      unplaced.push({ vmId: step.vmId, reason: step.reason ?? 'no host fits' });
      continue;
    }
    const wait = step.notBeforeMs - Date.now();
    if (wait > 0) await sleep(wait, ctx.signal);
    const target = await deps.hosts.get(step.hostId);
    await ctx.log(`restarting ${row.name} on ${target.name}`);
    // The inventory names the new host first: the failed one no longer speaks for this VM.
    await deps.store.update(step.vmId, {
      hostId: step.hostId,
      state: 'stopped',
      stateReason: 'restarting: its host failed',
    });
    try {
      await startVm(deps, ctx, step.vmId, { haRestart: true });
      out.restarted.push({ vm: row.name, on: target.name });
    } catch (err) {
      unplaced.push({ vmId: step.vmId, reason: (err as Error).message });
      await ctx.log(`${row.name} did not start on ${target.name}: ${(err as Error).message}`);
    }
  }
  return unplaced;
}

export function failoverTask(deps: VmDeps): TaskKind<FailoverParams> {
  return {
    kind: 'ha.failover',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const host = await deps.hosts.get(p.hostId);
      const out: FailoverOutcome = { host: host.name, restarted: [], notRestarted: [] };
      await ctx.step(`restarting the protected VMs of ${host.name}`, 5);
      // VMs moved but not started (a manager restart in the middle) are started first.
      for (const r of await deps.db
        .selectFrom('vms')
        .selectAll()
        .where('stateReason', '=', 'restarting: its host failed')
        .execute()) {
        if (r.hostId && r.hostId !== p.hostId && r.state === 'stopped')
          await startVm(deps, ctx, r.id, { haRestart: true });
      }
      let unplaced: { vmId: string; reason: string }[] = [];
      for (let round = 0; round < maxRounds; round++) {
        unplaced = await restartRound(deps, ctx, p.hostId, out);
        if (unplaced.length === 0) break;
        for (const u of unplaced) await ctx.log(`cannot restart ${u.vmId} yet: ${u.reason}`);
        if (round < maxRounds - 1) await sleep(retryDelayMs(round + 1), ctx.signal);
      }
      for (const u of unplaced) {
        const vm = await deps.store.get(u.vmId).catch(() => null);
        out.notRestarted.push({ vm: vm?.name ?? u.vmId, reason: u.reason });
      }
      return out;
    },
  };
}
