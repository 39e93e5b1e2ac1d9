/**
 * /api/v1/replications: a VM replicated to another host of the cluster (docs/replication.md):
 * its replica (a stopped VM row on the target host that only a failover starts), its cycles
 * (each one recovery point, a task), its recovery points, and how far it trails (the RPO watch).
 * A relationship is named by its VM (one per VM) or by its id.
 */
import { type Static, Type } from 'typebox';
import { ErrorBody, Name, Timestamp, Uuid } from '../common.ts';
import { Consistency, PointId, ReplicatedDisk } from '../replication.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

/** `30s`, `5m`, `15m`, `4h`: a whole number of seconds, minutes or hours. */
export const Duration = Type.String({ pattern: '^[0-9]{1,6}(s|m|h)$', maxLength: 8 });

/** A number of seconds as a Duration: 30 → `30s`, 300 → `5m`, 14400 → `4h`, 0 → `0`. */
export function durationText(s: number): string {
  if (s === 0) return '0';
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

export const ReplicationState = Type.Union([
  Type.Literal('initial'),
  Type.Literal('replicating'),
  Type.Literal('paused'),
  Type.Literal('failed-over'),
]);
export type ReplicationState = Static<typeof ReplicationState>;

/** What the RPO watch says of a relationship (manager/replication/rpo.ts). */
export const ReplicationRpo = Type.Object({
  /** ok within the interval, late past it, alert past twice it; initial before the first point; paused. */
  state: Type.Union([
    Type.Literal('initial'),
    Type.Literal('ok'),
    Type.Literal('late'),
    Type.Literal('alert'),
    Type.Literal('paused'),
  ]),
  /** Seconds the replica trails: the age of its newest point; null before the first. */
  lagSeconds: Type.Union([Type.Number(), Type.Null()]),
  /** When the next cycle starts; null while one runs or while paused. */
  nextCycleAt: Type.Union([Timestamp, Type.Null()]),
  why: Type.String(),
});
export type ReplicationRpo = Static<typeof ReplicationRpo>;

export const Replication = Type.Object({
  id: Uuid,
  vm: Name,
  vmId: Uuid,
  /** The replica: a stopped VM row on the target host. */
  replica: Name,
  replicaVmId: Uuid,
  host: Name,
  pool: Name,
  /** Seconds between cycles: the promised RPO. */
  intervalSeconds: Type.Integer(),
  /** Older recovery points kept besides the newest (0–24). */
  points: Type.Integer(),
  /** Seconds between application-consistent points (guest filesystems frozen); 0: never. */
  appConsistentEverySeconds: Type.Integer(),
  /** Bytes per second sent; 0: no limit. */
  bandwidth: Type.Integer(),
  state: ReplicationState,
  rpo: ReplicationRpo,
  /** Why the next (or the running) cycle sends the disks whole; null when it need not. */
  resyncReason: Type.Union([Type.String(), Type.Null()]),
  lastError: Type.Union([Type.String(), Type.Null()]),
  lastCycleAt: Type.Union([Timestamp, Type.Null()]),
  lastTask: Type.Union([Uuid, Type.Null()]),
  /** The newest recovery point and how many the replica holds. */
  newestPoint: Type.Union([PointId, Type.Null()]),
  pointCount: Type.Integer(),
  /** The relationship this one reverses after a planned failover. */
  reverseOf: Type.Union([Uuid, Type.Null()]),
  /** Across sites: the site keeping the replica (`to`), or whose VM this replicates (`from`); null: this cluster. */
  site: Type.Union([
    Type.Object({ name: Name, direction: Type.Union([Type.Literal('to'), Type.Literal('from')]) }),
    Type.Null(),
  ]),
  createdAt: Timestamp,
});
export type Replication = Static<typeof Replication>;

export const RecoveryPointInfo = Type.Object({
  id: PointId,
  /** When the primary's view was taken. */
  takenAt: Timestamp,
  consistency: Consistency,
  consistencyNote: Type.Union([Type.String(), Type.Null()]),
  disks: Type.Array(ReplicatedDisk),
  dirtyBytes: Type.Integer(),
  sentBytes: Type.Integer(),
  task: Type.Union([Uuid, Type.Null()]),
  /** Why the next prune keeps it (the newest, one per period), or null: it goes. */
  kept: Type.Union([Type.String(), Type.Null()]),
});
export type RecoveryPointInfo = Static<typeof RecoveryPointInfo>;

export const CreateReplicationBody = Type.Object(
  {
    vm: Type.String({ minLength: 1, maxLength: 63, description: 'VM name or id' }),
    host: Type.Optional(
      Type.String({ ...Name, description: 'the host that keeps the replica: another host of this cluster' }),
    ),
    site: Type.Optional(
      Type.String({ ...Name, description: 'or the trusted site (another Tern cluster) that keeps it' }),
    ),
    pool: Type.Optional(
      Type.String({
        ...Name,
        description: "the target host's pool (default: the pool of the VM's first disk)",
      }),
    ),
    every: Type.String({
      ...Duration,
      description: 'the interval between cycles: 30s, 5m or 15m (any from 30s to 24h)',
    }),
    points: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 24, description: 'older recovery points kept (default 0)' }),
    ),
    appConsistentEvery: Type.Optional(
      Type.String({
        pattern: '^(0|[0-9]{1,6}(s|m|h))$',
        description: 'period of application-consistent points (guest filesystems frozen), e.g. 4h; 0: never',
      }),
    ),
    bandwidth: Type.Optional(Type.Integer({ minimum: 0, description: 'bytes per second sent; 0: no limit' })),
  },
  { additionalProperties: false },
);
export type CreateReplicationBody = Static<typeof CreateReplicationBody>;

const Ref = Type.Object({
  replication: Type.String({
    minLength: 1,
    maxLength: 63,
    description: 'the VM name, or the replication id',
  }),
});
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const tags = ['replication'];

export const replicationRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/replications',
    summary: 'Replicated VMs, with how far each replica trails',
    tags,
    reply: { 200: Type.Object({ items: Type.Array(Replication) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/replications',
    summary:
      'Replicate a VM to another host: its replica, a stopped VM there, gets a recovery point every interval',
    tags,
    body: CreateReplicationBody,
    reply: { 201: Replication, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/replications/:replication',
    summary: 'Show a replication and its RPO',
    tags,
    params: Ref,
    reply: { 200: Replication, ...errors },
  }),
  pause: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/pause',
    summary: 'Pause a replication: no cycle starts (one under way finishes), no RPO alert',
    tags,
    params: Ref,
    reply: { 200: Replication, ...errors },
  }),
  resume: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/resume',
    summary: 'Resume a paused replication',
    tags,
    params: Ref,
    reply: { 200: Replication, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/replications/:replication',
    summary:
      'Remove a replication, its replica VM and its files on the target host (refused while a VM stands on a point)',
    tags,
    params: Ref,
    query: Type.Object({
      force: Type.Optional(
        Type.Boolean({
          description: 'the target host is offline: forget the replica, leave its files there',
        }),
      ),
    }),
    reply: { 204: Type.Null(), ...errors },
  }),
  points: route({
    method: 'GET',
    path: '/api/v1/replications/:replication/points',
    summary: 'The recovery points of a replica, oldest first',
    tags,
    params: Ref,
    reply: { 200: Type.Object({ items: Type.Array(RecoveryPointInfo) }), ...errors },
  }),
  cycle: route({
    method: 'POST',
    path: '/api/v1/replications/:replication/cycle',
    summary: 'Run a replication cycle now: one recovery point',
    tags,
    params: Ref,
    reply: { 202: TaskAccepted, ...errors },
  }),
};
