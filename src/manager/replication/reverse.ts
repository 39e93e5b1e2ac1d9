/**
 * Reverse replication after a planned failover: a new relationship from the new primary (the
 * replica that now runs) back to the old primary's host, whose replica is the old primary's
 * own VM row (stopped, kept from starting), so that failing back is a planned failover of it.
 *
 * Its first cycle sends the disks whole: the old primary's disks hold exactly the common point
 * after a planned failover, but adopting them as the reverse replica's first point needs the
 * replica's host to take a volume in as a point (and the new primary's disks a bitmap from the
 * common point on), which the hosts do not offer yet. The old disks are kept (kept volumes),
 * not deleted: until the reverse's first point is whole they are the only copy on that side.
 */
import { randomUUID } from 'node:crypto';
import { now } from '../db/database.ts';
import type { ReplicationTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext } from '../tasks/engine.ts';
import { keepVolumes } from '../vms/kept.ts';
import type { ReplicaFailoverDeps } from './failover-deps.ts';

export const reverseResyncReason =
  "reverse replication's first copy: sent whole (the old primary's disks are not adopted as the common point yet)";

/** Starts the reverse of `rel` once (a resumed failover finds it made); its id, or null when none can be. */
export async function startReverse(
  d: ReplicaFailoverDeps,
  ctx: TaskContext,
  rel: ReplicationTable,
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
  const oldDisks = vmSpecOf(old)
    .disks.filter((x) => !x.readonly)
    .map((x) => x.volume);
  const row: ReplicationTable = {
    id: randomUUID(),
    vmId: newPrimary.id,
    replicaVmId: old.id,
    targetHostId: old.hostId,
    targetPool: oldDisks[0]?.pool ?? rel.targetPool,
    intervalS: rel.intervalS,
    points: rel.points,
    appConsistentEveryS: rel.appConsistentEveryS,
    bandwidth: rel.bandwidth,
    state: 'initial',
    resyncReason: reverseResyncReason,
    lastError: null,
    lastCycleAt: null,
    lastTaskId: null,
    reverseOf: rel.id,
    targetSiteId: null,
    sourceSiteId: null,
    sourceVmName: null,
    createdAt: now(),
  };
  // Kept first: a failover killed after the reverse is made does not come back here.
  await keepVolumes(d.db, oldDisks);
  await d.db.transaction().execute(async (trx) => {
    await trx.insertInto('replications').values(row).execute();
    await trx.updateTable('vms').set({ replicaOf: row.id }).where('id', '=', old.id).execute();
  });
  await ctx.log(
    `reverse replication ${row.id} from ${newPrimary.name} to the old primary's host: its first copy is sent whole; ` +
      `${old.name}'s old disks are kept (tern lists them as kept volumes) until you remove them`,
  );
  return row.id;
}
