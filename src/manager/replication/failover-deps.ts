/**
 * What failovers (test, planned, unplanned) need from the rest of the manager, and the
 * recovery point they act on.
 */
import { TernError } from '../../errors.ts';
import type { RecoveryPointTable, ReplicationTable } from '../db/schema.ts';
import type { HaMonitor } from '../ha/monitor.ts';
import type { NetworkSync } from '../networks/host-sync.ts';
import type { NicDeps } from '../networks/nics.ts';
import type { TaskEngine } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import type { CycleDeps } from './cycle.ts';

export interface ReplicaFailoverDeps extends CycleDeps, NicDeps {
  tasks: TaskEngine;
  networkSync: Pick<NetworkSync, 'changed' | 'settled'>;
  ha: Pick<HaMonitor, 'healthOf'>;
}

/** The point asked for, or the newest; refused when the replica holds none (yet). */
export async function chosenPoint(
  d: Pick<VmDeps, 'db'>,
  rel: ReplicationTable,
  asked: string | undefined,
  vmName: string,
): Promise<RecoveryPointTable> {
  const q = d.db.selectFrom('recoveryPoints').selectAll().where('replicationId', '=', rel.id);
  const point =
    asked && asked !== 'latest'
      ? await q.where('id', '=', asked).executeTakeFirst()
      : await q.orderBy('id', 'desc').executeTakeFirst();
  if (point) return point;
  if (!asked || asked === 'latest')
    throw new TernError('conflict', `the replica of ${vmName} holds no recovery point yet`);
  const ids = (await q.orderBy('id').execute()).map((p) => p.id);
  throw new TernError(
    'not_found',
    `the replica of ${vmName} has no recovery point ${asked} (it has ${ids.join(', ') || 'none'})`,
    { field: 'point', points: ids },
  );
}
