/**
 * High availability: what the manager assigns each host (in its answer to the host's
 * heartbeat), the cluster's HA settings, and each VM's restart policy.
 */
import { type Static, Type } from 'typebox';
import { Name, Uuid } from './common.ts';
import { VolumeRef } from './vm.ts';

// A VM's policy lives apart, so that the VM schema can use it without an import cycle.
export {
  defaultVmHaPolicy,
  RestartPolicy,
  RestartPriority,
  VmHaPolicy,
} from './ha-policy.ts';

/**
 * A host's HA duties. The agent renews its lease in `slot` of `statefile` and, if it can
 * neither renew the lease nor reach a manager for `timeoutS`, fences: it kills
 * `protectedVms` and refuses further commands. Kept on the host, so an agent restarted without
 * a manager still knows its duties.
 */
export const HaAssignment = Type.Object(
  {
    enabled: Type.Boolean(),
    /** T_fence: how long a host may be cut off from both the statefile and every manager. */
    timeoutS: Type.Integer({ minimum: 10, maximum: 600 }),
    /** The statefile, in a pool every host shares. */
    statefile: Type.Union([VolumeRef, Type.Null()]),
    slot: Type.Integer({ minimum: 0, maximum: 4095 }),
    protectedVms: Type.Array(Uuid, { maxItems: 100_000 }),
    /** Bumped on every change, so the agent applies each assignment once. */
    generation: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type HaAssignment = Static<typeof HaAssignment>;

/**
 * The body of an agent's heartbeat: the generation of the HA assignment it enforces (null: none).
 * The manager learns from it which VMs the host will kill if it fences.
 */
export const HeartbeatRequest = Type.Object(
  { haGeneration: Type.Union([Type.Integer(), Type.Null()]) },
  { additionalProperties: false },
);
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatReply = Type.Object({
  host: Name,
  state: Type.String(),
  ha: HaAssignment,
});
export type HeartbeatReply = Static<typeof HeartbeatReply>;

export const HaSettings = Type.Object(
  {
    enabled: Type.Boolean(),
    /** T_fence, 10 s at least; a host is declared failed only after T_fence plus a margin. */
    timeoutS: Type.Integer({ minimum: 10, maximum: 600 }),
    failuresToTolerate: Type.Integer({ minimum: 0, maximum: 16 }),
    /** Refuse (rather than warn about) starting a protected VM that breaks the plan. */
    strictAdmission: Type.Boolean(),
    /** The shared pool that holds the statefile. */
    statefilePool: Type.Union([Name, Type.Null()]),
    /** How long the storage path takes to fail over, as the operator declares it. */
    storageFailoverS: Type.Integer({ minimum: 0, maximum: 600 }),
  },
  { additionalProperties: false },
);
export type HaSettings = Static<typeof HaSettings>;

export const defaultHaSettings: HaSettings = {
  enabled: false,
  timeoutS: 30,
  failuresToTolerate: 1,
  strictAdmission: false,
  statefilePool: null,
  storageFailoverS: 0,
};

export const HaHostState = Type.Union([
  Type.Literal('healthy'),
  Type.Literal('isolated'),
  Type.Literal('storage-lost'),
  Type.Literal('suspect'),
  Type.Literal('failed'),
]);

/** A host as the manager's HA watch sees it (`GET /api/v1/ha/status`, and `ha` events). */
export const HaHostStatus = Type.Object({
  host: Type.String(),
  state: HaHostState,
  networkSilentMs: Type.Number(),
  leaseSilentMs: Type.Number(),
  /** Its lease was seen since the watch began: only then can it be declared failed. */
  leaseSeen: Type.Boolean(),
  /** How many VMs the host confirmed it protects: the ones a failover restarts. */
  protecting: Type.Integer(),
  /**
   * Protected VMs the inventory places on the host that it has not confirmed yet (just
   * started, restarted or moved there, until its next heartbeats): a failover of the host now
   * would report them, not restart them.
   */
  unconfirmed: Type.Integer(),
});
export type HaHostStatus = Static<typeof HaHostStatus>;

/** Slots an HA statefile has: one per host of the cluster. */
export const maxStatefileSlots = 4096;

/** One host's lease in the HA statefile, as decoded from its slot. */
export const SlotRecord = Type.Object({
  hostId: Type.String(),
  counter: Type.Integer({ minimum: 0 }),
  wallTimeMs: Type.Number(),
  timeoutS: Type.Integer(),
  fenced: Type.Boolean(),
});
export type SlotRecord = Static<typeof SlotRecord>;

/** A statefile slot: a valid lease, never written (empty), or not readable as one (invalid). */
export const SlotState = Type.Union([
  Type.Object({ slot: Type.Integer(), state: Type.Literal('valid'), record: SlotRecord }),
  Type.Object({ slot: Type.Integer(), state: Type.Literal('empty') }),
  Type.Object({ slot: Type.Integer(), state: Type.Literal('invalid'), reason: Type.String() }),
]);
export type SlotState = Static<typeof SlotState>;
