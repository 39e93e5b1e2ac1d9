/**
 * Replication's calls to hosts (host-calls.ts) through their agents' replica routes
 * (src/wire/agent-replica-routes.ts, agent-replicate-routes.ts); replicating a VM is followed
 * as every ndjson transfer is. The receive address given to the primary's host is the one the
 * manager reaches the replica's agent at: hosts of a cluster reach each other as it does.
 */
import { agentRoutes } from '../../wire/agent-routes.ts';
import { pathOf } from '../../wire/route.ts';
import { callAgent } from '../hosts/agent-transport.ts';
import { followTransfer } from '../hosts/datastore-transfer.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { ReplicaHosts } from './host-calls.ts';

const callMs = 120_000;
// A prune merges qcow2 files on the host: a big point takes a while.
const pruneMs = 30 * 60_000;

export function agentReplicaHosts(hosts: HostRegistry): ReplicaHosts {
  const t = (hostId: string) => hosts.client(hostId).transport;
  return {
    receiveUrl: (hostId, id) => `${hosts.client(hostId).url}${pathOf(agentRoutes.receiveReplica, { id })}`,
    prepareReceive: (hostId, id, body) =>
      callAgent(t(hostId), agentRoutes.prepareReceive, { params: { id }, body }, callMs),
    replicaStatus: (hostId, id, pool) =>
      callAgent(t(hostId), agentRoutes.replicaStatus, { params: { id }, body: { pool } }, callMs),
    prunePoints: (hostId, id, body) =>
      callAgent(t(hostId), agentRoutes.prunePoints, { params: { id }, body }, pruneMs),
    lendPoint: (hostId, id, point, body) =>
      callAgent(t(hostId), agentRoutes.lendPoint, { params: { id, point }, body }, callMs),
    adoptPoint: (hostId, id, body) =>
      callAgent(t(hostId), agentRoutes.adoptPoint, { params: { id }, body }, callMs),
    removeReplica: async (hostId, id, pool) => {
      await callAgent(t(hostId), agentRoutes.removeReplica, { params: { id }, body: { pool } }, pruneMs);
    },
    replicateVm: (hostId, vmId, body, onReport, signal) =>
      followTransfer(
        t(hostId),
        agentRoutes.replicateVm,
        { params: { id: vmId }, body },
        'replication',
        onReport,
        signal,
      ),
  };
}
