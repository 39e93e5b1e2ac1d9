/**
 * A replica never runs: a VM row marked `replica_of` that its host reports running is a copy
 * that must not be (the old primary after a forced failover, whose host was cut off and comes
 * back with it still running, while the replica runs as the VM). Each time a host reports all
 * it runs, such a VM is forced off and a critical alert says so. A VM a task holds (a planned
 * failover shutting its primary down) is left to that task.
 */
import type { Logger } from '../../log.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { VmDeps } from '../vms/deps.ts';

export async function stopStaleCopies(
  d: Pick<VmDeps, 'db' | 'hosts' | 'store'> & { alerts: AlertStore; log: Logger },
  hostId: string,
): Promise<void> {
  const stale = await d.db
    .selectFrom('vms')
    .select(['id', 'name', 'replicaOf'])
    .where('hostId', '=', hostId)
    .where('replicaOf', 'is not', null)
    .where('state', 'in', ['running', 'paused', 'unreachable'])
    .execute();
  for (const vm of stale) {
    const held = await d.db
      .selectFrom('taskLocks')
      .select('taskId')
      .where('object', '=', `vm:${vm.id}`)
      .executeTakeFirst();
    if (held) continue;
    try {
      const reported = await d.hosts.client(hostId).act(vm.id, 'kill');
      await d.store.applyReport(hostId, vm.id, reported.state === 'stopped' ? null : reported);
      await d.alerts.raise({
        id: `vm:${vm.id}:stale-copy`,
        severity: 'critical',
        object: `vm:${vm.id}`,
        message: `VM ${vm.name} ran although it is a replica (replication ${vm.replicaOf}): forced off, its writes since the failover are not in the VM that runs`,
      });
    } catch (err) {
      d.log.error({ err, vm: vm.name }, 'could not force off a replica reported running');
    }
  }
}
