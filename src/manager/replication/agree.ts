/**
 * The manager's recovery points made those the replica's keeper holds (reality wins,
 * reconcile.ts decides): points it committed that were never recorded are recorded, points it
 * no longer holds are forgotten, and the replica VM's disks moved onto the newest. What a cycle
 * does first and last, and what a site keeping replicas for another does at each call.
 */
import type { ReplicaStatus } from '../../wire/replication.ts';
import type { ReplicationTable } from '../db/schema.ts';
import { reconcilePoints } from './reconcile.ts';
import type { Replications } from './relationships.ts';

export async function agreeOnPoints(
  replications: Replications,
  row: ReplicationTable,
  status: ReplicaStatus,
): Promise<{ recorded: string[]; forgotten: string[] }> {
  const { record, drop } = reconcilePoints(await replications.points.of(row.id), status.points);
  for (const p of record) await replications.points.recordHeld(row.id, p);
  if (drop.length > 0) await replications.points.drop(row.id, drop);
  if (record.length > 0 || drop.length > 0)
    await replications.pointReplicaAt(row, status.points.at(-1)?.id ?? null);
  return { recorded: record.map((p) => p.id), forgotten: drop };
}
