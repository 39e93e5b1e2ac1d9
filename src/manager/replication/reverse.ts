/**
 * Reverse replication after a planned failover: a new relationship from the new primary (the
 * replica that now runs) back to the old primary's host, whose replica is the old primary's
 * own VM row (stopped, kept from starting), so that failing back is a planned failover of it.
 *
 * Its first cycle sends only what changed since the common point P (the failover's point):
 * after a planned failover the old primary's disks hold exactly P (the last cycle read them
 * stopped, and nothing started them since), so its host adopts them as the reverse's first
 * point (backing files of the point's files, never written again), and the replica's disks,
 * lent from P, carry the reverse's dirty bitmap from P on (failover.ts adds it at the lend,
 * the reverse's id picked at submission), so the new primary's first reverse cycle is
 * incremental on P. A failover from before the id was picked, or old disks the host will not
 * adopt, leave the first copy whole, said in its resync reason. The old disks are kept volumes
 * until adopted: until then they are the only copy on that side.
 */
import { randomUUID } from 'node:crypto';
import type { VolumeRef } from '../../wire/vm.ts';
import { backupDisks } from '../backup/names.ts';
import { now } from '../db/database.ts';
import type { RecoveryPointTable, ReplicationTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext } from '../tasks/engine.ts';
import { keepVolumes } from '../vms/kept.ts';
import type { ReplicaFailoverDeps } from './failover-deps.ts';
import { replicaSpec } from './replica-spec.ts';

/** Why a reverse's first copy is sent whole: the common point could not be its first point. */
export const reverseResyncReason = (why: string) => `reverse replication's first copy: sent whole (${why})`;

/** Starts the reverse of `rel` once (a resumed failover finds it made); its id, or null when none can be. */
export async function startReverse(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  rel: ReplicationTable,
  pickedId: string | null,
): Promise<string | null> {
  const made = await d.db
    .selectFrom('replications')
    .select('id')
    .where('reverseOf', '=', rel.id)
    .executeTakeFirst();
  if (made) return made.id;
  const [newPrimary, old] = await Promise.all([d.store.row(rel.replicaVmId), d.store.row(rel.vmId)]);
  // Failing back (the reverse failed over) finds the old relationship of that VM: not reversed again.
  const other = await d.db
    .selectFrom('replications')
    .select('id')
    .where('vmId', '=', newPrimary.id)
    .executeTakeFirst();
  if (other || !old.hostId) {
    await ctx.log(
      `no reverse replication: ${newPrimary.name} ${other ? 'is replicated already' : 'has no old host'}`,
    );
    return null;
  }
  const oldDisks = backupDisks(vmSpecOf(old));
  const pool = oldDisks[0]?.volume.pool ?? rel.targetPool;
  const id = pickedId ?? randomUUID();
  // Kept first: a failover killed before the reverse is made does not lose them from sight.
  await keepVolumes(
    d.db,
    oldDisks.map((x) => x.volume),
  );
  const common = await adoptCommonPoint(d, ctx, rel, { id, hostId: old.hostId, pool, pickedId, oldDisks });
  const row: ReplicationTable = {
    id,
    vmId: newPrimary.id,
    replicaVmId: old.id,
    targetHostId: old.hostId,
    targetPool: pool,
    intervalS: rel.intervalS,
    points: rel.points,
    appConsistentEveryS: rel.appConsistentEveryS,
    bandwidth: rel.bandwidth,
    state: 'initial',
    resyncReason: typeof common === 'string' ? reverseResyncReason(common) : null,
    lastError: null,
    lastCycleAt: null,
    lastTaskId: null,
    reverseOf: rel.id,
    targetSiteId: null,
    sourceSiteId: null,
    sourceVmName: null,
    createdAt: now(),
  };
  await d.db.transaction().execute(async (trx) => {
    await trx.insertInto('replications').values(row).execute();
    if (typeof common === 'string') {
      await trx.updateTable('vms').set({ replicaOf: id }).where('id', '=', old.id).execute();
      return;
    }
    await trx
      .insertInto('recoveryPoints')
      .values({ ...common, replicationId: id })
      .execute();
    // The old primary's row is the reverse's replica on its first point, as a cycle leaves it.
    const spec = replicaSpec(
      vmSpecOf(newPrimary),
      { id: old.id, name: old.name, pool, replicationId: id },
      common.id,
    );
    await trx
      .updateTable('vms')
      .set({ replicaOf: id, spec: JSON.stringify(spec), diskSizes: newPrimary.diskSizes })
      .where('id', '=', old.id)
      .execute();
    // No longer loose volumes one may remove: the reverse's first point stands on them.
    for (const v of oldDisks)
      await trx
        .deleteFrom('keptVolumes')
        .where('pool', '=', v.volume.pool)
        .where('path', '=', v.volume.path)
        .execute();
  });
  await ctx.log(
    typeof common === 'string'
      ? `reverse replication ${id} from ${newPrimary.name} to the old primary's host: its first copy is sent whole (${common}); ` +
          `${old.name}'s old disks are kept (tern lists them as kept volumes) until you remove them`
      : `reverse replication ${id} from ${newPrimary.name} to the old primary's host: ${old.name}'s disks are its first ` +
          `recovery point ${common.id}, and its first cycle sends only what changed since`,
  );
  return id;
}

/**
 * The common point adopted on the old primary's host as the reverse's first point (its row to
 * record), or why not. Idempotent on the host: a resumed failover asks again.
 */
async function adoptCommonPoint(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  rel: ReplicationTable,
  r: {
    id: string;
    hostId: string;
    pool: string;
    pickedId: string | null;
    oldDisks: { name: string; volume: VolumeRef }[];
  },
): Promise<RecoveryPointTable | string> {
  const failover = await d.db
    .selectFrom('failovers')
    .selectAll()
    .where('replicationId', '=', rel.id)
    .executeTakeFirst();
  if (!failover) return 'the failover recorded no point';
  if (!failover.planned)
    return "after an unplanned failover the old primary's disks may hold writes the common point lacks";
  if (!r.pickedId)
    return "the failover began before reverse replications adopted the old primary's disks: its replica's disks record no changes since the common point";
  const point = await d.db
    .selectFrom('recoveryPoints')
    .selectAll()
    .where('replicationId', '=', rel.id)
    .where('id', '=', failover.pointId)
    .executeTakeFirstOrThrow();
  const sized = JSON.parse(point.disks) as { name: string; sizeBytes: number }[];
  const disks = r.oldDisks.map((o) => ({
    name: o.name,
    volume: o.volume,
    sizeBytes: sized.find((x) => x.name === o.name)?.sizeBytes ?? 0,
  }));
  if (disks.length === 0 || disks.some((x) => x.sizeBytes === 0) || disks.length !== sized.length)
    return `the old primary's disks are not those of recovery point ${point.id}`;
  await ctx.step(`adopting the old primary's disks as recovery point ${point.id} of the reverse`, 90);
  try {
    await d.replicaHosts.adoptPoint(r.hostId, r.id, {
      pool: r.pool,
      point: point.id,
      takenAt: point.takenAt,
      consistency: point.consistency === 'application' ? 'application' : 'crash',
      disks,
    });
  } catch (err) {
    return `the old primary's host did not adopt its disks as the common point: ${(err as Error).message}`;
  }
  return {
    ...point,
    replicationId: r.id,
    dirtyBytes: 0,
    sentBytes: 0,
    taskId: ctx.id,
    createdAt: now(),
  };
}
