/**
 * The agent routes of the host holding replicas (src/agent/replication/): prepare a cycle and
 * take its stream, tell a replica's points, keep some, lend one to a VM's volumes, remove the
 * whole replica. Managers call all but `receiveReplica`, which the primary's host calls with
 * the ticket `prepareReceive` gave. Part of `agentRoutes`.
 */
import { Type } from 'typebox';
import { Ok, tags } from './agent-route-parts.ts';
import {
  AdoptPointRequest,
  LendPointRequest,
  PointId,
  PrepareReceiveReply,
  PrepareReceiveRequest,
  PrunePointsRequest,
  ReceiveResult,
  ReplicaStatus,
  ReplicationId,
} from './replication.ts';
import { route } from './route.ts';

const ReplicaParams = Type.Object({ id: ReplicationId });
const PoolBody = Type.Object(
  { pool: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

export const agentReplicaRoutes = {
  prepareReceive: route({
    summary:
      'Prepare a recovery point on a base (or an initial copy) and issue the one-time ticket of its stream',
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/prepare',
    params: ReplicaParams,
    body: PrepareReceiveRequest,
    reply: { 200: PrepareReceiveReply },
  }),
  replicaStatus: route({
    summary: "A replica's recovery points, pins and pending cycle, as its files tell",
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/status',
    params: ReplicaParams,
    body: PoolBody,
    reply: { 200: ReplicaStatus },
  }),
  prunePoints: route({
    summary: 'Keep these recovery points (and the pinned ones), merging the others away',
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/prune',
    params: ReplicaParams,
    body: PrunePointsRequest,
    reply: { 200: ReplicaStatus },
  }),
  lendPoint: route({
    summary: 'Make volumes standing on a recovery point (pinning it while they exist)',
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/points/:point/lend',
    params: Type.Object({ id: ReplicationId, point: PointId }),
    body: LendPointRequest,
    reply: { 200: ReplicaStatus },
  }),
  adoptPoint: route({
    summary:
      "Take volumes of this host in as a replica's first recovery point (referenced as backing files, never written)",
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/adopt',
    params: ReplicaParams,
    body: AdoptPointRequest,
    reply: { 200: ReplicaStatus },
  }),
  removeReplica: route({
    summary: 'Remove a replica and all its points; refused while a volume stands on one',
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/remove',
    params: ReplicaParams,
    body: PoolBody,
    reply: { 200: Ok },
  }),
  receiveReplica: route({
    summary:
      "A recovery point's stream from the primary's host (Authorization: Bearer <ticket>), committed once it checked out",
    tags,
    method: 'POST',
    path: '/agent/v1/replicas/:id/receive',
    params: ReplicaParams,
    rawBody: {
      contentType: 'application/octet-stream',
      description: 'the replication stream (src/agent/replication/frames.ts), read as it arrives',
    },
    reply: { 200: ReceiveResult },
  }),
};
