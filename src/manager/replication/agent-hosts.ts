/**
 * Replication's calls to hosts through their agents (host-calls.ts), from the agent protocol's
 * replica routes. Until a host's agent serves them, every call fails saying so; a relationship
 * can be made and removed all the same, and its cycles fail with that reason.
 */
import { TernError } from '../../errors.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { ReplicaHosts } from './host-calls.ts';

const notYet = () =>
  Promise.reject(new TernError('unavailable', "this cluster's agents do not keep replicas yet"));

export function agentReplicaHosts(hosts: HostRegistry): ReplicaHosts {
  return {
    receiveUrl: (hostId, replicationId) =>
      `${hosts.client(hostId).url}/agent/v1/replicas/${replicationId}/receive`,
    prepareReceive: notYet,
    replicaStatus: notYet,
    prunePoints: notYet,
    // Nothing of it can be on a host that keeps no replicas.
    removeReplica: async () => {},
    replicateVm: notYet,
  };
}
