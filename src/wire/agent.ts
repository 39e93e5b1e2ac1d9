/**
 * The agent protocol: what a manager sends to a host's agent and what the agent reports.
 * Versioned as a whole by `agentProtocolVersion`; docs/agent-protocol.md describes the routes.
 */
import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from './common.ts';
import { HostFacts } from './host.ts';
import { GuestInfo, VmSpec, VolumeRef } from './vm.ts';

/** Bumped on any incompatible change; manager and agent refuse to talk across a mismatch. */
export const agentProtocolVersion = 1;
export const protocolHeader = 'tern-protocol';

export const AgentInfo = Type.Object({
  protocol: Type.Integer(),
  agentVersion: Type.String(),
  facts: HostFacts,
});
export type AgentInfo = Static<typeof AgentInfo>;

export const AgentVmState = Type.Union([
  Type.Literal('running'),
  Type.Literal('paused'),
  Type.Literal('shutdown'),
  Type.Literal('stopped'),
  Type.Literal('crashed'),
  Type.Literal('unreachable'),
]);
export type AgentVmState = Static<typeof AgentVmState>;

/** A VM as its host sees it right now. */
export const AgentVm = Type.Object({
  id: Uuid,
  name: Type.String(),
  state: AgentVmState,
  reason: Type.Union([Type.String(), Type.Null()]),
  pid: Type.Union([Type.Integer(), Type.Null()]),
  vncPort: Type.Union([Type.Integer(), Type.Null()]),
  startedAt: Type.Union([Timestamp, Type.Null()]),
  guest: GuestInfo,
});
export type AgentVm = Static<typeof AgentVm>;

export const VmAction = Type.Union(
  [
    Type.Literal('powerdown'),
    Type.Literal('guest-shutdown'),
    Type.Literal('guest-reboot'),
    Type.Literal('reset'),
    Type.Literal('pause'),
    Type.Literal('resume'),
    Type.Literal('kill'),
    Type.Literal('thaw'),
  ],
  {
    description:
      'powerdown: ACPI power button; guest-shutdown/guest-reboot: through qemu-ga; reset: hard reset; kill: force off; thaw: thaw guest filesystems a snapshot left frozen',
  },
);
export type VmAction = Static<typeof VmAction>;

export const AgentEvent = Type.Union([
  Type.Object({ type: Type.Literal('hello'), protocol: Type.Integer(), time: Timestamp }),
  Type.Object({ type: Type.Literal('vm'), vm: AgentVm }),
  Type.Object({ type: Type.Literal('vm.gone'), id: Uuid }),
  Type.Object({ type: Type.Literal('heartbeat'), time: Timestamp }),
]);
export type AgentEvent = Static<typeof AgentEvent>;

export const VolumeInfo = Type.Object({
  volume: VolumeRef,
  format: Type.String(),
  virtualBytes: Type.Integer(),
  actualBytes: Type.Integer(),
  backing: Type.Union([Type.String(), Type.Null()]),
  snapshots: Type.Optional(Type.Array(Type.Object({ name: Type.String(), createdAt: Type.String() }))),
});
export type VolumeInfo = Static<typeof VolumeInfo>;

export const CreateVolumeRequest = Type.Object(
  {
    volume: VolumeRef,
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
    sizeBytes: Type.Optional(Type.Integer({ minimum: 1 })),
    backing: Type.Optional(VolumeRef),
    // A standalone copy of this volume, its backing chain flattened (full clones).
    copyOf: Type.Optional(VolumeRef),
    content: Type.Optional(
      Type.Literal('uefi-vars', {
        description: "a copy of the host's empty UEFI variable store (OVMF_VARS), for a UEFI VM",
      }),
    ),
  },
  { additionalProperties: false },
);
export type CreateVolumeRequest = Static<typeof CreateVolumeRequest>;

export const CreateSeedRequest = Type.Object(
  {
    volume: VolumeRef,
    metaData: Type.String({ maxLength: 64 * 1024 }),
    userData: Type.Optional(Type.String({ maxLength: 256 * 1024 })),
    networkConfig: Type.Optional(Type.String({ maxLength: 64 * 1024 })),
  },
  { additionalProperties: false },
);
export type CreateSeedRequest = Static<typeof CreateSeedRequest>;

export const ImportVolumeRequest = Type.Object(
  {
    volume: VolumeRef,
    sourcePath: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: 'absolute path of a file on the host',
    }),
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
  },
  { additionalProperties: false },
);
export type ImportVolumeRequest = Static<typeof ImportVolumeRequest>;

export const AgentVmList = Type.Object({ vms: Type.Array(AgentVm) });
export const RunVmResult = Type.Object({ vm: AgentVm });
export { Uuid };

export const ResizeVolumeRequest = Type.Object(
  { volume: VolumeRef, sizeBytes: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);
export type ResizeVolumeRequest = Static<typeof ResizeVolumeRequest>;

export const SnapshotName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$' });

export const VolumeSnapshotRequest = Type.Object(
  {
    volume: VolumeRef,
    op: Type.Union([Type.Literal('create'), Type.Literal('apply'), Type.Literal('delete')]),
    name: SnapshotName,
  },
  { additionalProperties: false },
);
export type VolumeSnapshotRequest = Static<typeof VolumeSnapshotRequest>;

/**
 * Migration between hosts. The manager asks the target to get ready for an incoming VM, the
 * source to send it there, then the target to resume it and the source to let it go. See
 * docs/agent-protocol.md for the order and what each side guarantees.
 */
export const MigrationMode = Type.Union([Type.Literal('live'), Type.Literal('quick')], {
  description: 'live: pre-copy while the VM runs; quick: suspend to a state file, resume on the target',
});
export type MigrationMode = Static<typeof MigrationMode>;

export const MigrationStorage = Type.Union([Type.Literal('shared'), Type.Literal('mirror')], {
  description: 'shared: both hosts see the disks; mirror: the disks are copied to the target over NBD',
});
export type MigrationStorage = Static<typeof MigrationStorage>;

export const NbdTarget = Type.Object(
  {
    host: Type.String({ maxLength: 255 }),
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    /** Exported drives; each export is named after the drive's node name on both sides. */
    drives: Type.Array(Type.String({ maxLength: 64 }), { maxItems: 17 }),
  },
  { additionalProperties: false },
);
export type NbdTarget = Static<typeof NbdTarget>;

export const IncomingMigrationRequest = Type.Object(
  {
    /** The VM as it will run on the target: with mirror storage, its disks name target volumes. */
    spec: VmSpec,
    mode: MigrationMode,
    storage: MigrationStorage,
    /** Address the target listens on for the migration stream (and NBD); the host's own address. */
    listenHost: Type.String({ maxLength: 255 }),
    /** Quick migration: the state file (in a shared pool) to load the VM from. */
    stateFile: Type.Optional(VolumeRef),
    /**
     * Mirror storage: the volumes (disks and seed of `spec`) the target creates empty before
     * it starts, with the source's formats and virtual sizes; removed again on abort.
     */
    create: Type.Optional(
      Type.Array(
        Type.Object({
          volume: VolumeRef,
          format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
          sizeBytes: Type.Integer({ minimum: 1 }),
        }),
        { maxItems: 17 },
      ),
    ),
  },
  { additionalProperties: false },
);
export type IncomingMigrationRequest = Static<typeof IncomingMigrationRequest>;

export const IncomingMigration = Type.Object({
  /** Where the source sends the migration stream, e.g. tcp:10.0.0.2:49152 (live mode). */
  uri: Type.String(),
  nbd: Type.Union([NbdTarget, Type.Null()]),
});
export type IncomingMigration = Static<typeof IncomingMigration>;

export const MigrateRequest = Type.Object(
  {
    mode: MigrationMode,
    /** Live: the target's incoming URI. */
    uri: Type.Optional(Type.String({ maxLength: 512 })),
    /** Mirror the writable disks to these NBD exports before the memory is sent. */
    nbd: Type.Optional(NbdTarget),
    /** Quick: where the VM state is saved (a file in a shared pool). */
    stateFile: Type.Optional(VolumeRef),
    downtimeLimitMs: Type.Integer({ minimum: 1, maximum: 60_000 }),
    /** 0 means unlimited. */
    bandwidthMiBps: Type.Integer({ minimum: 0, maximum: 1_000_000 }),
    autoConverge: Type.Boolean(),
    /** Give up (and leave the VM running on the source) when not done within this time. */
    timeoutS: Type.Integer({ minimum: 1, maximum: 86_400 }),
  },
  { additionalProperties: false },
);
export type MigrateRequest = Static<typeof MigrateRequest>;

/** Lines of the source's newline-JSON answer to a migrate request. */
export const MigrationReport = Type.Union([
  Type.Object({
    type: Type.Literal('progress'),
    phase: Type.Union([Type.Literal('disks'), Type.Literal('memory'), Type.Literal('state')]),
    transferredBytes: Type.Integer(),
    totalBytes: Type.Integer(),
    remainingBytes: Type.Integer(),
    speedMiBps: Type.Number(),
    /** Guest memory dirtied per second while memory is sent. */
    dirtyBytesPerS: Type.Number(),
    expectedDowntimeMs: Type.Union([Type.Number(), Type.Null()]),
  }),
  Type.Object({
    type: Type.Literal('done'),
    /** When the source stopped the guest's CPUs (epoch ms). */
    stoppedAt: Type.Number(),
    /** QEMU's own figure for the stop-and-copy phase. */
    downtimeMs: Type.Number(),
    transferredBytes: Type.Integer(),
    totalMs: Type.Number(),
  }),
  Type.Object({ type: Type.Literal('error'), code: Type.String(), message: Type.String() }),
]);
export type MigrationReport = Static<typeof MigrationReport>;

export const FinishIncomingResult = Type.Object({
  vm: AgentVm,
  /** When the target's guest CPUs ran again (epoch ms). */
  resumedAt: Type.Number(),
});
export type FinishIncomingResult = Static<typeof FinishIncomingResult>;

/** Storage migration: move a running VM's disk to a new volume (another pool on the same host). */
export const MoveDiskRequest = Type.Object(
  {
    index: Type.Integer({ minimum: 0, maximum: 15 }),
    target: VolumeRef,
  },
  { additionalProperties: false },
);
export type MoveDiskRequest = Static<typeof MoveDiskRequest>;

/** Changes the medium in a running VM's CD-ROM drive: an ISO volume, or none (eject). */
export const ChangeCdromRequest = Type.Object(
  {
    medium: Type.Union([VolumeRef, Type.Null()]),
    force: Type.Boolean({ description: 'open the tray even if the guest has locked it' }),
  },
  { additionalProperties: false },
);
export type ChangeCdromRequest = Static<typeof ChangeCdromRequest>;
