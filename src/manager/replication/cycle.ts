/**
 * replication.cycle: one recovery point. The replica's host prepares the point on top of its
 * newest (or an initial copy) and gives a one-time ticket; the primary's host takes a
 * point-in-time view of the VM and streams what changed straight to the replica's host, which
 * commits the point once the whole stream checked out. Only then is the point recorded here;
 * the replica's points are pruned to what points.ts keeps, and the replica VM's disks moved to
 * the newest point's files.
 *
 * The replica's host is the truth about points (reconcile.ts): every cycle starts by agreeing
 * with it, and a cycle that fails or was interrupted (manager or agent killed) agrees with it
 * again in its cleanup, so the points recorded are the points committed. A broken chain (the
 * replica lost the point the manager knew as newest, or the primary cannot prove what changed
 * since it) makes the cycle send whole, saying why in the task log, the row and an alert,
 * without an operator's step.
 */
import { TernError } from '../../errors.ts';
import type { ReplicaStatus, ReplicateVmResult } from '../../wire/replication.ts';
import type { Task } from '../../wire/task.ts';
import type { AlertStore } from '../alerts/store.ts';
import { bytesText, percentOf, progressText } from '../backup/figures.ts';
import { nextBackupId } from '../backup/names.ts';
import { now } from '../db/database.ts';
import type { ReplicationTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext, TaskEngine, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import { agreeOnPoints } from './agree.ts';
import { freezeDue, pointPeriodMs } from './intervals.ts';
import { markPoints } from './points.ts';
import { brokenChain } from './reconcile.ts';
import { drivenHere, type Replications, replicationObject } from './relationships.ts';
import { type ReplicaSide, type ReplicaSideDeps, replicaSideOf } from './replica-side.ts';
import { replicatedDisks } from './replica-spec.ts';

export interface CycleDeps extends VmDeps, ReplicaSideDeps {
  replications: Replications;
  alerts: AlertStore;
}

export interface CycleParams {
  replicationId: string;
}

/** How long a failed cycle's cleanup waits for the replica's host to tell its points. */
const hostWaitMs = 60_000;
const logEveryMs = 5_000;

/** The dirty bitmaps of a replication on the primary's disks: `tern-rp-<first 8 hex of its id>`. */
export const bitmapOf = (replicationId: string) =>
  `tern-rp-${replicationId.replaceAll('-', '').slice(0, 8).toLowerCase()}`;

export const resyncAlertId = (replicationId: string) => `replication:${replicationId}:resync`;

export function replicationCycleTask(deps: CycleDeps): TaskKind<CycleParams> {
  return {
    kind: 'replication.cycle',
    // A cycle broken off is not continued: the replica's host drops what it half received at
    // the next prepare (an initial copy resumes from what arrived whole), the cleanup agrees
    // on the points, and the next cycle starts afresh.
    onInterrupt: 'fail',
    run: (ctx, p) => runCycle(deps, ctx, p),
    async cleanup(ctx, p, err) {
      const row = await deps.replications.find(p.replicationId);
      if (!row) return;
      await deps.replications.update(row.id, { lastError: err.message.slice(0, 1000) });
      const side = await replicaSideOf(deps, row);
      // After a restart the replica's keeper may not have reconnected yet: it is waited for,
      // within a bound, so the points recorded are the keeper's when the task ends. A cycle that
      // failed in this process because the keeper is gone leaves that to the next cycle's start.
      if (ctx.resumed)
        await side.reachable(hostWaitMs, (who) =>
          ctx.step(`waiting for ${who} to tell the replica's recovery points`),
        );
      else if (
        !(await side.ready().then(
          () => true,
          () => false,
        ))
      )
        return;
      await agree(deps, ctx, row, await side.status());
    },
  };
}

/** Starts a cycle now (the API's, the scheduler's): one at a time per relationship, never while paused. */
export async function submitCycle(
  s: { tasks: TaskEngine; replications: Replications },
  kind: TaskKind<CycleParams>,
  ref: string,
): Promise<Task> {
  const row = await s.replications.row(ref);
  drivenHere(row);
  if (row.state === 'paused' || row.state === 'failed-over')
    throw new TernError('conflict', `this replication is ${row.state}: no cycle runs`);
  const task = await s.tasks.submit(kind, { replicationId: row.id }, [replicationObject(row.id)]);
  await s.replications.update(row.id, { lastTaskId: task.id });
  return task;
}

export async function runCycle(deps: CycleDeps, ctx: TaskContext, p: CycleParams) {
  const { replications, replicaHosts } = deps;
  const row = await replications.row(p.replicationId);
  const side = await replicaSideOf(deps, row);
  if (row.state === 'failed-over')
    throw new TernError('conflict', 'this replication has failed over: no cycle runs');
  const vm = await deps.store.row(row.vmId);
  if (!vm.hostId) throw new TernError('conflict', `VM ${vm.name} has no host`);
  if (!['running', 'paused', 'stopped'].includes(vm.state))
    throw new TernError('conflict', `VM ${vm.name} is ${vm.state}: it replicates running, paused or stopped`);
  const source = await deps.hosts.get(vm.hostId);
  if (source.state === 'offline')
    throw new TernError('unavailable', `host ${source.name} is offline: no cycle now`);
  await side.ready();
  const spec = vmSpecOf(vm);
  const sizes = JSON.parse(vm.diskSizes) as number[];
  const disks = replicatedDisks(spec);

  await ctx.step(`asking ${side.name} for the replica's recovery points`, 1);
  const recordedNewest = (await replications.points.of(row.id)).at(-1)?.id ?? null;
  const status = await side.status();
  const broken = brokenChain(recordedNewest, status.points);
  await agree(deps, ctx, row, status);
  if (broken) await resync(deps, ctx, row, broken);
  const base = status.points.at(-1)?.id ?? null;
  // An initial copy broken off resumes into the same point, from what arrived whole.
  const point = base === null && status.pending ? status.pending.point : nextBackupId(new Date(), base);
  const points = await replications.points.of(row.id);
  const lastApp = points.filter((x) => x.consistency === 'application').at(-1);
  const freeze = freezeDue(row.appConsistentEveryS, lastApp ? Date.parse(lastApp.takenAt) : null, Date.now());

  const prepared = await side.prepare({
    point,
    base,
    disks: disks.map((d) => ({ name: d.name, sizeBytes: sizes[Number(d.name.slice(4))] ?? 0 })),
  });
  const resumed = prepared.resume.filter((r) => r.offset > 0);
  if (resumed.length > 0)
    await ctx.log(
      `the initial copy resumes: ${resumed.map((r) => `${r.disk} from ${bytesText(r.offset)}`).join(', ')}`,
    );
  await ctx.step(
    `replicating ${disks.length} disk(s) of ${vm.name} from ${source.name} to ${side.name} as point ${point}` +
      `${base ? ` (on ${base})` : ' (initial copy)'}${freeze ? ', application-consistent' : ''}`,
    5,
  );
  let lastLog = 0;
  const result: ReplicateVmResult = await replicaHosts.replicateVm(
    source.id,
    vm.id,
    {
      replication: row.id,
      point,
      previous: base,
      bitmap: bitmapOf(row.id),
      disks,
      freeze,
      bandwidth: row.bandwidth,
      target: {
        url: prepared.url,
        ticket: prepared.ticket,
        ca: prepared.ca,
        resume: prepared.resume,
      },
    },
    (r) => {
      // Shown, never awaited: a slow database must not stall the host's stream.
      if (r.type === 'log') ctx.log(r.message).catch(() => {});
      else if (r.type === 'progress') {
        const percent = 5 + Math.round(percentOf(0, r, r.totalBytes) * 0.9);
        if (Date.now() - lastLog >= logEveryMs) {
          lastLog = Date.now();
          ctx.step(progressText(r, 'sent'), percent).catch(() => {});
        } else ctx.progress(percent).catch(() => {});
      }
    },
    ctx.signal,
  );
  for (const d of result.disks)
    await ctx.log(
      `${d.name}: ${d.mode}${d.fullReason ? `: ${d.fullReason}` : ''}; ${bytesText(d.dirtyBytes)} changed, ` +
        `${bytesText(d.readBytes)} read, ${bytesText(d.sentBytes)} sent`,
    );
  if (result.consistencyNote) await ctx.log(`${result.consistency}-consistent: ${result.consistencyNote}`);
  // The primary could not prove what changed since the base: this point is whole.
  const wholeWhy = base ? result.disks.find((d) => d.mode === 'full')?.fullReason : null;
  if (wholeWhy && !broken)
    await resync(deps, ctx, row, `the primary sent ${vm.name}'s disks whole: ${wholeWhy}`);
  await replications.points.record(row.id, result, ctx.id);

  await ctx.step('pruning recovery points', 97);
  const after = await prune(side, ctx, row, await side.status());
  await agree(deps, ctx, row, after);
  const newest = after.points.at(-1)?.id ?? result.point;
  await replications.pointReplicaAt(row, newest);
  const fresh = await replications.row(row.id);
  await replications.update(row.id, {
    state: fresh.state === 'initial' ? 'replicating' : fresh.state,
    lastCycleAt: now(),
    lastError: null,
    resyncReason: null,
  });
  await deps.alerts.clear(resyncAlertId(row.id));
  const sent = result.disks.reduce((n, d) => n + d.sentBytes, 0);
  const dirty = result.disks.reduce((n, d) => n + d.dirtyBytes, 0);
  return {
    vm: vm.name,
    point: result.point,
    consistency: result.consistency,
    mode: result.disks.some((d) => d.mode === 'full') ? 'full' : 'incremental',
    dirtyBytes: dirty,
    sentBytes: sent,
    points: after.points.length,
  };
}

/** Records and reports why this cycle sends whole (a log line, the row, an alert). */
async function resync(deps: CycleDeps, ctx: TaskContext, row: ReplicationTable, why: string): Promise<void> {
  await ctx.log(`resync: ${why}; this cycle sends the disks whole`);
  await deps.replications.update(row.id, { resyncReason: why });
  const vm = await deps.store.find(row.vmId);
  await deps.alerts.raise({
    id: resyncAlertId(row.id),
    severity: 'warning',
    object: `replication:${row.id}`,
    message: `replication of VM ${vm?.name ?? row.vmId} resyncs: ${why}`,
  });
}

/** Asks the replica's host to keep only what points.ts keeps; its answer is the new status. */
async function prune(side: ReplicaSide, ctx: TaskContext, row: ReplicationTable, status: ReplicaStatus) {
  const marks = markPoints(
    status.points.map((x) => ({
      id: x.id,
      takenAt: Date.parse(x.takenAt),
      appConsistent: x.consistency === 'application',
    })),
    row.points,
    pointPeriodMs(row.appConsistentEveryS),
  );
  const keep = marks.filter((m) => m.kept).map((m) => m.point.id);
  if (keep.length === status.points.length) return status;
  // The host keeps more than asked where a point is pinned (a lent point and the older ones
  // its files stand on): what it dropped is read from its answer.
  const after = await side.prune(keep.sort());
  const left = new Set(after.points.map((x) => x.id));
  const dropped = status.points.filter((x) => !left.has(x.id)).map((x) => x.id);
  if (dropped.length > 0) await ctx.log(`dropped recovery point(s) ${dropped.join(', ')}`);
  return after;
}

/** Makes the recorded points those the replica's host holds (reality wins), saying what changed. */
async function agree(deps: CycleDeps, ctx: TaskContext, row: ReplicationTable, status: ReplicaStatus) {
  const { recorded, forgotten } = await agreeOnPoints(deps.replications, row, status);
  for (const id of recorded)
    await ctx.log(`recorded recovery point ${id}, which the replica's host committed`);
  if (forgotten.length > 0)
    await ctx.log(
      `forgot recovery point(s) ${forgotten.join(', ')}, which the replica's host no longer holds`,
    );
}
