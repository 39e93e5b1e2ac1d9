/**
 * What replication asks of hosts (src/wire/replication.ts): of the replica's host, prepare a
 * point, tell its points, keep some, lend one, adopt volumes as the first, remove the replica; of the primary's host, replicate a VM
 * as a point straight to the replica's host. One interface, so the cycle is written against
 * the contract and tests can stand in for a host that misbehaves.
 */
import type {
  AdoptPointRequest,
  LendPointRequest,
  PrepareReceiveReply,
  PrepareReceiveRequest,
  PrunePointsRequest,
  ReplicaStatus,
  ReplicateVmReport,
  ReplicateVmRequest,
  ReplicateVmResult,
} from '../../wire/replication.ts';

export interface ReplicaHosts {
  /** The replica host's receive address for this replication (the primary's host posts there). */
  receiveUrl(hostId: string, replicationId: string): string;
  prepareReceive(
    hostId: string,
    replicationId: string,
    req: PrepareReceiveRequest,
  ): Promise<PrepareReceiveReply>;
  replicaStatus(hostId: string, replicationId: string, pool: string): Promise<ReplicaStatus>;
  prunePoints(hostId: string, replicationId: string, req: PrunePointsRequest): Promise<ReplicaStatus>;
  /** Makes `req.disks` volumes standing on `point`, which stays pinned while they exist. */
  lendPoint(
    hostId: string,
    replicationId: string,
    point: string,
    req: LendPointRequest,
  ): Promise<ReplicaStatus>;
  /** Takes volumes of the host in as the replica's first point (reverse replication's common point). */
  adoptPoint(hostId: string, replicationId: string, req: AdoptPointRequest): Promise<ReplicaStatus>;
  /** Removes every file of the replica (a pinned point's too: the caller checked none is lent). */
  removeReplica(hostId: string, replicationId: string, pool: string): Promise<void>;
  replicateVm(
    hostId: string,
    vmId: string,
    req: ReplicateVmRequest,
    onReport: (r: Extract<ReplicateVmReport, { type: 'progress' | 'log' }>) => void,
    signal: AbortSignal,
  ): Promise<ReplicateVmResult>;
}
