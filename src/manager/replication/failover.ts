/**
 * Failover: the replica becomes the VM that runs. Planned: the primary is shut down cleanly
 * (bounded; refused if it will not stop, unless forced), one last cycle sends what its stopped
 * disks hold, and the replica starts on that point: no write is lost. Unplanned: the primary's
 * side is gone; the replica starts on the point chosen, only when failover-guard.ts allows it.
 *
 * Never both sides: the first thing the task writes is the primary's `replica_of` (this
 * relationship), which refuses every start of it (vms/power.ts) — HA's, an operator's — before
 * the replica can run. The replica's disks are overlays its host lends from the point (the
 * point's own files are never written, so an earlier point stays startable), its spec points
 * at them, its `replica_of` is cleared, it starts, and the relationship is `failed-over`.
 *
 * Killed at any instant, the task resumes: the point is recorded (table `failovers`) before
 * anything of it is lent, so a resumed failover lends that same point and a planned one sends
 * no second last cycle; lending is idempotent, and a replica its host reports running is not
 * lent again. A failover that fails is rolled back unless the
 * replica runs, in which case it is finished instead: the primary is stopped and kept from
 * starting, so the VM runs on exactly one host either way.
 */
import { TernError } from '../../errors.ts';
import { now } from '../db/database.ts';
import type { ReplicationTable, VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { shutdownVm, startVm } from '../vms/power.ts';
import { bitmapOf, runCycle } from './cycle.ts';
import type { ReplicaFailoverDeps } from './failover-deps.ts';
import { decideUnplannedFailover } from './failover-guard.ts';
import { planLentVm } from './lent-vm.ts';
import { primaryFactsOf } from './primary-facts.ts';
import { startReverse } from './reverse.ts';

export interface FailoverParams {
  replicationId: string;
  planned: boolean;
  /** Unplanned: the point chosen at submission. Planned: null (the last cycle's, recorded then). */
  point: string | null;
  force: boolean;
  /** A forced unplanned failover's risk in words (task log and audit). */
  risk: string | null;
  shutdownTimeoutSeconds: number;
  /** The replica's row as it was, to put back if the failover is rolled back. */
  replicaSpec: string;
  replicaDiskSizes: string;
  /** Whether the primary ran when asked: a rolled-back planned failover starts it again. */
  primaryRan: boolean;
  /** Planned, unless asked not to: replication from the new primary back to the old one's host. */
  reverse: boolean;
  /** That reverse relationship's id, picked at submission (absent: a task from before it was). */
  reverseId?: string | null;
  /** The primary's HA policy (JSON), which the replica takes once it runs; back on a rollback. */
  haPolicy: string | null;
}

export function failoverKind(d: ReplicaFailoverDeps): TaskKind<FailoverParams> {
  return {
    kind: 'replication.failover',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const rel = await relation(d, p.replicationId);
      // Another site's VM (this site keeps its replica) is not in this inventory.
      const primary = rel.sourceSiteId ? null : await d.store.row(rel.vmId);
      const primaryName = primary?.name ?? rel.sourceVmName ?? rel.vmId;
      if (p.risk) await ctx.log(`warning: ${p.risk}`);
      if (rel.state !== 'failed-over') {
        // From here no start of the primary is accepted, HA's neither: its protection goes
        // with the VM to the replica once that runs.
        if (primary) await d.store.update(primary.id, { replicaOf: rel.id, haPolicy: null });
        const point = (await chosenBefore(d, rel.id)) ?? (await choose(d, ctx, p, rel));
        await runReplica(d, ctx, rel, point, p);
        await d.db
          .updateTable('replications')
          .set({ state: 'failed-over' })
          .where('id', '=', rel.id)
          .execute();
      } else {
        await ensureRunning(d, ctx, rel.replicaVmId);
      }
      const reverse = p.reverse ? await startReverse(d, ctx, rel, p.reverseId ?? null) : null;
      const replica = await d.store.row(rel.replicaVmId);
      await ctx.log(
        primary
          ? `${replica.name} runs on its host; ${primaryName} is stopped and kept from starting`
          : `${replica.name} runs on its host; ${primaryName} was at another site`,
      );
      return { vm: replica.name, stopped: primaryName, point: await chosenBefore(d, rel.id), reverse };
    },
    async cleanup(ctx, p, error) {
      const rel = await relation(d, p.replicationId);
      if (rel.state === 'failed-over') return;
      const replica = await d.store.row(rel.replicaVmId);
      const reported = await d.hosts
        .client(rel.targetHostId)
        .getVm(replica.id)
        .catch(() => null);
      if (reported && reported.state !== 'stopped') {
        // The replica runs: finishing is the only way back to one copy.
        await d.db
          .updateTable('replications')
          .set({ state: 'failed-over' })
          .where('id', '=', rel.id)
          .execute();
        await ctx.log(`the replica runs although the failover failed (${error.message}): it stays the VM`);
        return;
      }
      await rollBack(d, ctx, p, rel);
    },
  };
}

const relation = async (d: ReplicaFailoverDeps, id: string): Promise<ReplicationTable> =>
  d.db.selectFrom('replications').selectAll().where('id', '=', id).executeTakeFirstOrThrow();

/** The point an earlier run of this failover chose (it was interrupted after choosing). */
const chosenBefore = async (d: ReplicaFailoverDeps, replicationId: string): Promise<string | null> =>
  (
    await d.db
      .selectFrom('failovers')
      .select('pointId')
      .where('replicationId', '=', replicationId)
      .executeTakeFirst()
  )?.pointId ?? null;

/** The point the replica runs on, recorded before anything of it is lent. */
async function choose(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  p: FailoverParams,
  rel: ReplicationTable,
): Promise<string> {
  const point = p.planned ? await stopAndSend(d, ctx, p, rel) : await recheckUnplanned(d, p);
  await d.db
    .insertInto('failovers')
    .values({
      replicationId: rel.id,
      pointId: point,
      planned: p.planned ? 1 : 0,
      taskId: ctx.id,
      createdAt: now(),
    })
    .execute();
  return point;
}

/** Planned: the primary shut down cleanly (bounded), then one last cycle from its stopped disks. */
async function stopAndSend(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  p: FailoverParams,
  rel: ReplicationTable,
): Promise<string> {
  await ctx.step('shutting the primary down', 10);
  const how = await shutdownVm(d, ctx, rel.vmId, p.shutdownTimeoutSeconds, p.force);
  if (how === 'force') await ctx.log('the primary did not shut down in time: powered off (forced)');
  await ctx.step('sending the last changes', 30);
  const point = (await runCycle(d, ctx, { replicationId: rel.id })).point;
  await ctx.log(`recovery point ${point} holds every write of the stopped primary`);
  return point;
}

/** Unplanned: the guard asked again at run time, since the primary's side may have changed. */
async function recheckUnplanned(d: ReplicaFailoverDeps, p: FailoverParams): Promise<string> {
  const rel = await relation(d, p.replicationId);
  const facts = await primaryFactsOf(d, rel);
  const decision = decideUnplannedFailover(facts, p.force);
  if (!decision.allowed) throw refusal(decision);
  return p.point!;
}

export const refusal = (decision: { why: string; fix: string }): TernError =>
  new TernError('conflict', `unplanned failover refused: ${decision.why}; ${decision.fix}`);

/**
 * The replica made runnable on `point` and started, unless its host already runs it (a resumed
 * failover): its disks lent from the point, its spec pointing at them, `replica_of` cleared.
 */
async function runReplica(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  rel: ReplicationTable,
  point: string,
  p: FailoverParams,
) {
  const replica = await d.store.row(rel.replicaVmId);
  const agent = d.hosts.client(rel.targetHostId);
  const reported = await agent.getVm(replica.id);
  if (!reported || reported.state === 'stopped') {
    await ctx.step(`making the replica's disks on recovery point ${point}`, 60);
    const plan = await lentPlan(d, rel, replica, point);
    // Lending again what an earlier try lent is done; the extra volumes are made afresh.
    for (const v of plan.extra)
      await agent.deleteVolume(v.volume).catch((err: TernError) => {
        if (err.code !== 'not_found') throw err;
      });
    // A reverse replication to come records every write of the replica from the point on.
    await d.replicaHosts.lendPoint(rel.targetHostId, rel.id, point, {
      pool: rel.targetPool,
      disks: plan.disks,
      ...(p.reverseId ? { bitmap: `${bitmapOf(p.reverseId)}-${point}` } : {}),
    });
    for (const v of plan.extra) await agent.createVolume(v);
    await d.store.update(replica.id, {
      spec: JSON.stringify(plan.spec),
      diskSizes: JSON.stringify(plan.diskSizes),
      replicaOf: null,
    });
  }
  if (p.haPolicy) await d.store.update(replica.id, { haPolicy: p.haPolicy });
  await ensureRunning(d, ctx, replica.id);
}

/** The replica on `point`: the same volumes for every try of one failover. */
async function lentPlan(d: ReplicaFailoverDeps, rel: ReplicationTable, replica: VmTable, point: string) {
  const pointRow = await d.db
    .selectFrom('recoveryPoints')
    .selectAll()
    .where('replicationId', '=', rel.id)
    .where('id', '=', point)
    .executeTakeFirstOrThrow();
  const current = vmSpecOf(replica);
  return planLentVm(current, JSON.parse(pointRow.disks) as { name: string; sizeBytes: number }[], {
    id: replica.id,
    name: replica.name,
    pool: rel.targetPool,
    point,
    nics: current.nics,
  });
}

async function ensureRunning(d: ReplicaFailoverDeps, ctx: TaskContext, vmId: string): Promise<void> {
  await ctx.step('starting the replica', 80);
  await startVm(d, ctx, vmId);
}

/**
 * Undone: the replica's lent disks go and its row is the replica it was; the primary may start
 * again, and a planned failover's primary that ran is started again.
 */
async function rollBack(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  p: FailoverParams,
  rel: ReplicationTable,
): Promise<void> {
  const replica = await d.store.row(rel.replicaVmId);
  const agent = d.hosts.client(rel.targetHostId);
  const gone = (err: TernError) => {
    if (err.code !== 'not_found') throw err;
  };
  const point = await chosenBefore(d, rel.id);
  await agent.forgetVm(replica.id).catch(gone);
  if (point) {
    const plan = await lentPlan(d, rel, replica, point);
    for (const v of [...plan.disks.map((x) => x.target), ...plan.extra.map((x) => x.volume)])
      await agent.deleteVolume(v).catch(gone);
  }
  await d.store.update(replica.id, {
    spec: p.replicaSpec,
    diskSizes: p.replicaDiskSizes,
    replicaOf: rel.id,
    haPolicy: null,
  });
  await d.db.deleteFrom('failovers').where('replicationId', '=', rel.id).execute();
  if (!rel.sourceSiteId) await d.store.update(rel.vmId, { replicaOf: null, haPolicy: p.haPolicy });
  await ctx.log('rolled back: the replica is as it was, the primary may start');
  if (p.planned && p.primaryRan) {
    await ctx.step('starting the primary again', 90);
    await startVm(d, ctx, rel.vmId).catch((err: TernError) =>
      ctx.log(`the primary did not start again: ${err.message}; start it by hand`),
    );
  }
}
