/** The cluster as a whole: placement, capacity, migration requests, placement groups. */
import { type Static, Type } from 'typebox';
import { MigrationMode } from './agent.ts';
import { Name, Timestamp } from './common.ts';

export const MigrateVmRequest = Type.Object(
  {
    to: Type.Optional(Name),
    mode: Type.Optional(MigrationMode),
    targetPool: Type.Optional(Name),
    downtimeMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
    bandwidthMiBps: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 1_000_000, description: '0: unlimited' }),
    ),
    timeoutS: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
  },
  { additionalProperties: false },
);
export type MigrateVmRequest = Static<typeof MigrateVmRequest>;

export const HostVerdict = Type.Object({
  host: Name,
  eligible: Type.Boolean(),
  filter: Type.Optional(Type.String()),
  reason: Type.Optional(Type.String()),
  rating: Type.Optional(Type.Number()),
});

export const PlacementExplanation = Type.Object({
  host: Type.Union([Name, Type.Null()]),
  summary: Type.String(),
  verdicts: Type.Array(HostVerdict),
});
export type PlacementExplanation = Static<typeof PlacementExplanation>;

export const MigrationPreview = Type.Object({
  placement: PlacementExplanation,
  storage: Type.Union([Type.Literal('shared'), Type.Literal('mirror'), Type.Null()]),
  mirrored: Type.Array(Type.String()),
  refused: Type.Union([Type.String(), Type.Null()]),
});
export type MigrationPreview = Static<typeof MigrationPreview>;

export const MoveDiskRequest = Type.Object({ pool: Name }, { additionalProperties: false });

export const MaintenanceRequest = Type.Object(
  {
    stopUnmovable: Type.Optional(
      Type.Boolean({ description: 'stop the VMs that cannot migrate instead of refusing' }),
    ),
  },
  { additionalProperties: false },
);

export const CapacityRequest = Type.Object(
  {
    size: Type.Object(
      {
        vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
        memoryMiB: Type.Integer({ minimum: 32, maximum: 4 * 1024 * 1024 }),
        diskBytes: Type.Integer({ minimum: 0 }),
      },
      { additionalProperties: false },
    ),
    tolerate: Type.Integer({ minimum: 0, maximum: 100, description: 'host failures to survive' }),
    pool: Type.Optional(Name),
  },
  { additionalProperties: false },
);

export const CapacityAnswer = Type.Object({
  fits: Type.Integer(),
  perHost: Type.Array(Type.Object({ host: Type.String(), count: Type.Integer() })),
  limitedBy: Type.String(),
  /** The protected load of the `tolerate` hosts holding the most: what the others keep room for. */
  reservedForFailover: Type.Object({ vcpus: Type.Number(), memoryMiB: Type.Number() }),
  /** 'every failure set' when each set of `tolerate` hosts was checked; 'bound' when a conservative bound stood in. */
  checked: Type.Union([Type.Literal('every failure set'), Type.Literal('bound'), Type.Literal('none')]),
});
export type CapacityAnswer = Static<typeof CapacityAnswer>;

export const ClusterInfo = Type.Object({
  hosts: Type.Object({ online: Type.Integer(), offline: Type.Integer(), maintenance: Type.Integer() }),
  cpuBaseline: Type.Object({ model: Type.String(), reason: Type.String() }),
  capacity: Type.Object({
    cores: Type.Integer(),
    memoryMiB: Type.Integer(),
    allocatedVcpus: Type.Integer(),
    allocatedMemoryMiB: Type.Integer(),
  }),
});
export type ClusterInfo = Static<typeof ClusterInfo>;

export const PlacementGroupKind = Type.Union([Type.Literal('affinity'), Type.Literal('anti-affinity')]);

export const PlacementGroup = Type.Object({
  name: Name,
  kind: PlacementGroupKind,
  members: Type.Array(Name),
  createdAt: Timestamp,
});
export type PlacementGroup = Static<typeof PlacementGroup>;

export const CreatePlacementGroup = Type.Object(
  { name: Name, kind: PlacementGroupKind },
  { additionalProperties: false },
);

export const ClusterSettings = Type.Object(
  {
    cpuOvercommit: Type.Number({ minimum: 0.1, maximum: 64, description: 'vCPUs allowed per host core' }),
    memoryOvercommit: Type.Number({ minimum: 0.1, maximum: 4, description: '1.0: no memory overcommit' }),
    storageOvercommit: Type.Number({
      minimum: 0.1,
      maximum: 1000,
      description:
        'virtual disk bytes a new or grown disk may take per byte free in its pool; 1.0: it fits in full',
    }),
    strategy: Type.Union([Type.Literal('spread'), Type.Literal('pack')]),
    migrationDowntimeMs: Type.Integer({ minimum: 1, maximum: 60_000 }),
    migrationBandwidthMiBps: Type.Integer({ minimum: 0, maximum: 1_000_000, description: '0: unlimited' }),
    migrationTimeoutS: Type.Integer({ minimum: 10, maximum: 86_400 }),
  },
  { additionalProperties: false },
);
export type ClusterSettings = Static<typeof ClusterSettings>;
