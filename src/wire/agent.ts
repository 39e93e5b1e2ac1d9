/**
 * The agent protocol: what a manager sends to a host's agent and what the agent reports.
 * Versioned as a whole by `agentProtocolVersion`; docs/agent-protocol.md describes the routes.
 */
import { type Static, Type } from 'typebox';
import { Timestamp, Uuid } from './common.ts';
import { HostFacts } from './host.ts';
import { GuestInfo, VolumeRef } from './vm.ts';

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
  ],
  {
    description:
      'powerdown: ACPI power button; guest-shutdown/guest-reboot: through qemu-ga; reset: hard reset; kill: force off',
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
