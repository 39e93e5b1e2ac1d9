/**
 * Replication between the manager and hosts (docs/replication.md): what the host holding a
 * replica is asked (prepare a cycle, tell its points, keep some, lend a point to a VM) and what
 * the primary's host is asked (take a view of the VM, send what changed to the replica's host).
 *
 * A cycle: the manager asks the replica's host to prepare point P on top of point B (null:
 * the initial copy) and gets a one-time ticket; it asks the primary's host to replicate the VM
 * as point P, giving the replica's address and the ticket; the primary's host takes the same
 * point-in-time view backup takes (dirty bitmaps `tern-rp-<8 hex>-<point>`), streams the
 * changed extents (src/agent/replication/frames.ts: compressed, each with its SHA-256, the
 * stream chained to a final digest) straight to the replica's host, which writes them into a
 * fresh overlay on B and commits P only once the whole stream checked out. A cycle that breaks
 * leaves the replica's points as they were.
 */
import { type Static, Type } from 'typebox';
import {
  BackupDiskSource,
  BackupName,
  backupBitmapFamily,
  diskReadFields,
  vmTransferReport,
} from './backup.ts';
import { Timestamp } from './common.ts';
import { VolumeRef } from './vm.ts';

/** Every dirty bitmap Tern keeps for replication starts so: `tern-rp-<first 8 hex of the replication id>`. */
export const replicationBitmapFamily = 'tern-rp-';

/**
 * Whether a disk's dirty bitmap is one of Tern's (a backup's `tern-bk-…`, a replication's
 * `tern-rp-…`): what a migration carries and a snapshot revert removes, for both alike.
 */
export const isTernBitmap = (name: string): boolean =>
  name.startsWith(backupBitmapFamily) || name.startsWith(replicationBitmapFamily);

/** A recovery point's id: the UTC time of its view, `YYYY-MM-DDTHH-MM-SSZ` (sortable, as backup ids). */
export const PointId = Type.String({ pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}-\\d{2}-\\d{2}Z$' });
export type PointId = Static<typeof PointId>;

/** A replication's id (a UUID, as every object id). */
export const ReplicationId = Type.String({ pattern: '^[0-9a-f-]{36}$' });

export const Consistency = Type.Union([Type.Literal('application'), Type.Literal('crash')]);

/** One disk of a replica: its name (`disk0`…, by the primary's disk index) and virtual size. */
export const ReplicaDisk = Type.Object(
  { name: BackupName, sizeBytes: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);
export type ReplicaDisk = Static<typeof ReplicaDisk>;

/** Where a disk's stream resumes: an interrupted initial copy keeps what arrived whole. */
export const ResumeAt = Type.Object(
  { disk: BackupName, offset: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
export type ResumeAt = Static<typeof ResumeAt>;

// ---- the replica's host ------------------------------------------------------------------

/**
 * Prepare point `point` on top of point `base` (null: the initial copy, into fresh images).
 * Leftovers of a cycle that never committed go, except an initial copy's for the same point,
 * which resumes. `pool` is the storage pool of the replica's host that holds the replica.
 */
export const PrepareReceiveRequest = Type.Object(
  {
    pool: Type.String({ minLength: 1, maxLength: 64 }),
    point: PointId,
    base: Type.Union([PointId, Type.Null()]),
    disks: Type.Array(ReplicaDisk, { minItems: 1, maxItems: 16 }),
  },
  { additionalProperties: false },
);
export type PrepareReceiveRequest = Static<typeof PrepareReceiveRequest>;

export const PrepareReceiveReply = Type.Object({
  /** One-time: the primary's host presents it with the stream (32 random bytes, base64url). */
  ticket: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
  /** Per disk, the offset below which an interrupted initial copy already holds the data. */
  resume: Type.Array(ResumeAt),
});
export type PrepareReceiveReply = Static<typeof PrepareReceiveReply>;

/** A recovery point as the replica's host holds it (reality wins over the manager's rows). */
export const ReplicaPoint = Type.Object({
  id: PointId,
  /** When the primary's view was taken. */
  takenAt: Timestamp,
  consistency: Consistency,
  /** Each disk of the point: a read-only qcow2 whose chain is the point's image. */
  disks: Type.Array(Type.Object({ name: BackupName, sizeBytes: Type.Integer(), volume: VolumeRef })),
  /** VMs' disks (a test failover's, a failed-over replica's) stand on it: it cannot go. */
  pinnedBy: Type.Array(VolumeRef),
});
export type ReplicaPoint = Static<typeof ReplicaPoint>;

export const ReplicaStatus = Type.Object({
  pool: Type.String(),
  /** Oldest first. */
  points: Type.Array(ReplicaPoint),
  /** A cycle prepared and not committed (under way, or broken off). */
  pending: Type.Union([Type.Object({ point: PointId, resume: Type.Array(ResumeAt) }), Type.Null()]),
  /** Bytes the replica's files take on the host. */
  bytes: Type.Integer(),
});
export type ReplicaStatus = Static<typeof ReplicaStatus>;

/** Keep exactly these points (the newest always among them); the others are merged away. */
export const PrunePointsRequest = Type.Object(
  {
    pool: Type.String({ minLength: 1, maxLength: 64 }),
    keep: Type.Array(PointId, { minItems: 1, maxItems: 25 }),
  },
  { additionalProperties: false },
);
export type PrunePointsRequest = Static<typeof PrunePointsRequest>;

/**
 * Make volumes standing on a point (qcow2 overlays backed by its disks), for a VM to run from:
 * a test failover's copy or a failed-over replica. The point is pinned while they exist.
 */
export const LendPointRequest = Type.Object(
  {
    pool: Type.String({ minLength: 1, maxLength: 64 }),
    disks: Type.Array(Type.Object({ name: BackupName, target: VolumeRef }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 16,
    }),
    /**
     * A dirty bitmap (`tern-rp-<8 hex>-<point>`) each new overlay gets, empty and persistent,
     * before anything runs on it: the replication back from the VM that runs on them (reverse
     * replication after a planned failover) then knows every write since this point.
     */
    bitmap: Type.Optional(Type.String({ pattern: '^tern-rp-[0-9a-f]{8}-[0-9TZ-]{20}$' })),
  },
  { additionalProperties: false },
);
export type LendPointRequest = Static<typeof LendPointRequest>;

/**
 * Take existing volumes of this host's pool `pool` in as a replica's first point `point` (a
 * planned failover's old primary, whose disks hold exactly that point): each becomes the
 * backing file of the point's disk file, which is never written, nor is the volume since.
 */
export const AdoptPointRequest = Type.Object(
  {
    pool: Type.String({ minLength: 1, maxLength: 64 }),
    point: PointId,
    takenAt: Timestamp,
    consistency: Consistency,
    disks: Type.Array(
      Type.Object(
        { name: BackupName, volume: VolumeRef, sizeBytes: Type.Integer({ minimum: 1 }) },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 16 },
    ),
  },
  { additionalProperties: false },
);
export type AdoptPointRequest = Static<typeof AdoptPointRequest>;

// ---- the primary's host ------------------------------------------------------------------

/** Where the stream goes: the replica host's agent, the ticket it gave, where resumes start. */
export const ReplicaTarget = Type.Object(
  {
    /** `https://host:port/agent/v1/replicas/<replication>/receive` */
    url: Type.String({ pattern: '^https://', maxLength: 512 }),
    ticket: Type.String({ pattern: '^[A-Za-z0-9_-]{43}$' }),
    /** The CA (PEM) the replica's host certificate is checked against; null: this cluster's. */
    ca: Type.Union([Type.String({ maxLength: 16384 }), Type.Null()]),
    resume: Type.Array(ResumeAt),
  },
  { additionalProperties: false },
);
export type ReplicaTarget = Static<typeof ReplicaTarget>;

/**
 * Replicate a VM (running or stopped) as point `point`: only what changed since `previous` when
 * the VM's bitmap of this replication proves it, else whole (saying why; the replica's host
 * still keeps its older points).
 */
export const ReplicateVmRequest = Type.Object(
  {
    replication: ReplicationId,
    point: PointId,
    previous: Type.Union([PointId, Type.Null()]),
    /** `tern-rp-<8 hex>`: the VM's bitmaps of this replication. */
    bitmap: Type.String({ pattern: '^tern-rp-[0-9a-f]{8}$' }),
    disks: Type.Array(BackupDiskSource, { minItems: 1, maxItems: 16 }),
    freeze: Type.Boolean(),
    /** Bytes per second sent; 0: no limit. */
    bandwidth: Type.Integer({ minimum: 0 }),
    target: ReplicaTarget,
  },
  { additionalProperties: false },
);
export type ReplicateVmRequest = Static<typeof ReplicateVmRequest>;

export const ReplicatedDisk = Type.Object({
  ...diskReadFields,
  /** Bytes on the wire for this disk (compressed, headers included). */
  sentBytes: Type.Integer(),
});
export type ReplicatedDisk = Static<typeof ReplicatedDisk>;

/** What the replica's host answers once point `point` is committed, passed on by the primary's. */
export const ReplicateVmResult = Type.Object({
  point: PointId,
  takenAt: Timestamp,
  consistency: Consistency,
  consistencyNote: Type.Union([Type.String({ maxLength: 500 }), Type.Null()]),
  disks: Type.Array(ReplicatedDisk),
  /** The stream's final chained SHA-256, as both ends computed it. */
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});
export type ReplicateVmResult = Static<typeof ReplicateVmResult>;

export const ReplicateVmReport = vmTransferReport(ReplicateVmResult);
export type ReplicateVmReport = Static<typeof ReplicateVmReport>;

/** What the replica's host answers the stream (`receive`), once it committed the point. */
export const ReceiveResult = Type.Object({
  point: PointId,
  takenAt: Timestamp,
  consistency: Consistency,
  /** Bytes of data frames (decompressed) written, and bytes the stream carried. */
  writtenBytes: Type.Integer(),
  streamBytes: Type.Integer(),
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});
export type ReceiveResult = Static<typeof ReceiveResult>;
