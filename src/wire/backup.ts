/**
 * Backup between the manager and a host: what a host is asked to do with a datastore
 * (src/backup/datastore/) and what it answers. The manager decides (which datastore, which
 * backup an incremental builds on, which bitmap, the key); the host reads disks, writes and
 * reads chunks, and reports what it did, figures included, so a task can say it truly.
 */
import { type Static, type TSchema, Type } from 'typebox';
import { Timestamp } from './common.ts';
import { VolumeRef } from './vm.ts';

/**
 * Every dirty bitmap Tern keeps for backups starts so (`tern-bk-<datastore>-<backup id>`): what
 * a host removes from a disk whose contents changed behind the bitmaps' back (a snapshot
 * reverted), so that the next backup reads it whole and says why.
 */
export const backupBitmapFamily = 'tern-bk-';

/** A backup or group name inside a datastore (manifest.ts NAME_PATTERN). */
export const BackupName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$' });

/** A chunk size: a power of two from 4 KiB to 64 MiB (fixed-index.ts). */
export const ChunkSize = Type.Integer({ minimum: 4096, maximum: 64 * 1024 * 1024 });

/**
 * How a host opens a datastore. The key (32 bytes, base64) comes from the manager's secret store
 * for each request and is never written on the host; null for an unencrypted datastore.
 */
export const DatastoreAccess = Type.Object(
  {
    path: Type.String({ minLength: 2, maxLength: 1024, pattern: '^/' }),
    key: Type.Union([Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' }), Type.Null()]),
  },
  { additionalProperties: false },
);
export type DatastoreAccess = Static<typeof DatastoreAccess>;

export const CreateDatastoreRequest = Type.Object(
  { datastore: DatastoreAccess },
  { additionalProperties: false },
);
export type CreateDatastoreRequest = Static<typeof CreateDatastoreRequest>;

/** What a host sees of a datastore: reachable, the right key, room left. */
export const DatastoreStatus = Type.Object({
  path: Type.String(),
  encrypted: Type.Boolean(),
  totalBytes: Type.Integer(),
  freeBytes: Type.Integer(),
});
export type DatastoreStatus = Static<typeof DatastoreStatus>;

/** One disk to back up: its name in the backup (`disk0`…) and where it is on the host. */
export const BackupDiskSource = Type.Object(
  {
    name: BackupName,
    volume: VolumeRef,
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
  },
  { additionalProperties: false },
);
export type BackupDiskSource = Static<typeof BackupDiskSource>;

/**
 * Back up one VM, running or stopped, into a datastore. `previous` is the last backup of this
 * VM in this datastore that the manager knows finished: an incremental reads only what the
 * VM's persistent dirty bitmap (`bitmap`, one per VM and datastore) marked since it, when the
 * host can prove that bitmap belongs to it; otherwise the backup reads everything, still
 * stores only chunks the datastore lacks, and says why.
 */
export const BackupVmRequest = Type.Object(
  {
    datastore: DatastoreAccess,
    chunkSize: ChunkSize,
    group: BackupName,
    id: BackupName,
    previous: Type.Union([BackupName, Type.Null()]),
    /** The prefix of the VM's dirty bitmaps for this datastore, e.g. `tern-bk-1a2b3c4d`. */
    bitmap: Type.String({ pattern: '^[a-z0-9-]{1,40}$' }),
    disks: Type.Array(BackupDiskSource, { minItems: 1, maxItems: 16 }),
    /** Freeze the guest's filesystems while the point-in-time view is set up (when it has an agent). */
    freeze: Type.Boolean(),
    /** Bytes per second read from the disks; 0: no limit. */
    bandwidth: Type.Integer({ minimum: 0 }),
    labels: Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type BackupVmRequest = Static<typeof BackupVmRequest>;

/** How a disk was read for a backup or a replication's point. */
export const diskReadFields = {
  name: BackupName,
  sizeBytes: Type.Integer(),
  mode: Type.Union([Type.Literal('full'), Type.Literal('incremental')]),
  /** Why a disk was read whole although a previous backup or point existed (null when incremental or first). */
  fullReason: Type.Union([Type.String({ maxLength: 500 }), Type.Null()]),
  /** Bytes the dirty bitmap marked (incremental), or the allocated bytes (full). */
  dirtyBytes: Type.Integer(),
  /** Bytes read from the view. */
  readBytes: Type.Integer(),
};

export const BackupDiskResult = Type.Object({
  ...diskReadFields,
  /** Chunks of the disk, and those that were new to the datastore with their stored bytes. */
  chunks: Type.Integer(),
  newChunks: Type.Integer(),
  newBytes: Type.Integer(),
});
export type BackupDiskResult = Static<typeof BackupDiskResult>;

export const BackupVmResult = Type.Object({
  group: BackupName,
  id: BackupName,
  createdAt: Timestamp,
  consistency: Type.Union([Type.Literal('application'), Type.Literal('crash')]),
  /** Why the backup is only crash-consistent (no guest agent, freeze refused, a stopped VM is consistent). */
  consistencyNote: Type.Union([Type.String({ maxLength: 500 }), Type.Null()]),
  disks: Type.Array(BackupDiskResult),
  /** The manifest's SHA-256, as written. */
  manifestSha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});
export type BackupVmResult = Static<typeof BackupVmResult>;

/** Progress of a long datastore operation: backup, restore, verify, sync. */
export const TransferProgress = Type.Object({
  type: Type.Literal('progress'),
  /** The disk (or backup) being worked on. */
  item: Type.String({ maxLength: 200 }),
  doneBytes: Type.Integer(),
  totalBytes: Type.Integer(),
  /** Bytes written into the datastore or onto the target volume. */
  writtenBytes: Type.Integer(),
  bytesPerS: Type.Number(),
});
export type TransferProgress = Static<typeof TransferProgress>;

/** The last line of a report that failed: the error, as an API error says it. */
export const ErrorLine = Type.Object({
  type: Type.Literal('error'),
  code: Type.String(),
  message: Type.String(),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});

/** A line for the task log (why a disk is read whole, what froze). */
export const LogLine = Type.Object({ type: Type.Literal('log'), message: Type.String({ maxLength: 1000 }) });

/** The lines of a datastore operation that ends with `result`: progress, then `done` or `error`. */
function transferReport<T extends TSchema>(result: T) {
  return Type.Union([TransferProgress, Type.Object({ type: Type.Literal('done'), result }), ErrorLine]);
}

/** The lines of a VM's disks read and sent (a backup, a replication): progress and log lines, then `done` or `error`. */
export function vmTransferReport<T extends TSchema>(result: T) {
  return Type.Union([
    TransferProgress,
    LogLine,
    Type.Object({ type: Type.Literal('done'), result }),
    ErrorLine,
  ]);
}

export const BackupVmReport = vmTransferReport(BackupVmResult);
export type BackupVmReport = Static<typeof BackupVmReport>;

/** Write one disk of a backup onto a volume of the host (made by the caller, at least as large). */
export const RestoreDiskRequest = Type.Object(
  {
    datastore: DatastoreAccess,
    group: BackupName,
    id: BackupName,
    disk: BackupName,
    target: VolumeRef,
    format: Type.Union([Type.Literal('qcow2'), Type.Literal('raw')]),
    bandwidth: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type RestoreDiskRequest = Static<typeof RestoreDiskRequest>;

export const RestoreDiskResult = Type.Object({
  sizeBytes: Type.Integer(),
  /** Bytes written (chunks of zeros are skipped on a fresh volume). */
  writtenBytes: Type.Integer(),
  /** SHA-256 of the whole disk as restored, to compare with what was backed up. */
  sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
});
export type RestoreDiskResult = Static<typeof RestoreDiskResult>;

export const RestoreDiskReport = transferReport(RestoreDiskResult);
export type RestoreDiskReport = Static<typeof RestoreDiskReport>;

/** A backup as its manifest tells it, read from the datastore itself (reality wins). */
export const StoredBackup = Type.Object({
  group: BackupName,
  id: BackupName,
  createdAt: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  disks: Type.Array(Type.Object({ name: BackupName, sizeBytes: Type.Integer(), chunkSize: Type.Integer() })),
});
export type StoredBackup = Static<typeof StoredBackup>;

export const ListBackupsRequest = Type.Object(
  { datastore: DatastoreAccess, group: Type.Optional(BackupName) },
  { additionalProperties: false },
);
export type ListBackupsRequest = Static<typeof ListBackupsRequest>;

export const ForgetBackupRequest = Type.Object(
  { datastore: DatastoreAccess, group: BackupName, id: BackupName },
  { additionalProperties: false },
);
export type ForgetBackupRequest = Static<typeof ForgetBackupRequest>;

/** Re-read the chunks of the given backups and check each against its name. */
export const VerifyRequest = Type.Object(
  {
    datastore: DatastoreAccess,
    backups: Type.Array(Type.Object({ group: BackupName, id: BackupName }), { maxItems: 100000 }),
  },
  { additionalProperties: false },
);
export type VerifyRequest = Static<typeof VerifyRequest>;

export const VerifyResult = Type.Object({
  backups: Type.Array(
    Type.Object({
      group: BackupName,
      id: BackupName,
      ok: Type.Boolean(),
      /** What is wrong: a missing or damaged index or chunk, named. */
      problems: Type.Array(Type.String({ maxLength: 500 }), { maxItems: 100 }),
    }),
  ),
  chunksChecked: Type.Integer(),
  bytesChecked: Type.Integer(),
});
export type VerifyResult = Static<typeof VerifyResult>;

export const VerifyReport = transferReport(VerifyResult);
export type VerifyReport = Static<typeof VerifyReport>;

/**
 * Mark and sweep: chunks no manifest names are removed once untouched since `protectSince`
 * (the start of the oldest backup still running anywhere, minus a margin), so a chunk a
 * running backup inserted or found (and touched) is never taken from under it.
 */
export const GcRequest = Type.Object(
  { datastore: DatastoreAccess, protectSince: Timestamp },
  { additionalProperties: false },
);
export type GcRequest = Static<typeof GcRequest>;

export const GcResult = Type.Object({
  chunksKept: Type.Integer(),
  bytesKept: Type.Integer(),
  chunksRemoved: Type.Integer(),
  bytesRemoved: Type.Integer(),
  /** Unreferenced chunks kept because they were touched after `protectSince`. */
  chunksProtected: Type.Integer(),
  temporariesRemoved: Type.Integer(),
});
export type GcResult = Static<typeof GcResult>;

export const GcReport = transferReport(GcResult);
export type GcReport = Static<typeof GcReport>;

/**
 * Live restore, host side: serve the backup's disks from the datastore over NBD and make each
 * target volume a qcow2 overlay on its export, so the VM can start at once; the data is then
 * streamed into the overlays while the guest runs (`streamLiveRestore`). Idempotent: asked
 * again (after an agent restart), the server is started anew over the overlays already made.
 */
export const LiveRestoreRequest = Type.Object(
  {
    datastore: DatastoreAccess,
    group: BackupName,
    id: BackupName,
    disks: Type.Array(Type.Object({ disk: BackupName, target: VolumeRef }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 16,
    }),
  },
  { additionalProperties: false },
);
export type LiveRestoreRequest = Static<typeof LiveRestoreRequest>;

export const LiveRestoreReport = transferReport(Type.Object({ streamedBytes: Type.Integer() }));
export type LiveRestoreReport = Static<typeof LiveRestoreReport>;

/** Reading files of a backup's filesystem (ext2/3/4) without restoring it. */
export const BackupFilesRequest = Type.Object(
  {
    datastore: DatastoreAccess,
    group: BackupName,
    id: BackupName,
    disk: BackupName,
    /** The partition's number; absent: the largest one, or the whole disk without a table. */
    partition: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 128 }), Type.Null()])),
    path: Type.String({ minLength: 1, maxLength: 4096, pattern: '^/' }),
  },
  { additionalProperties: false },
);
export type BackupFilesRequest = Static<typeof BackupFilesRequest>;

export const BackupPartition = Type.Object({
  number: Type.Integer(),
  startBytes: Type.Integer(),
  sizeBytes: Type.Integer(),
  type: Type.String(),
  name: Type.String(),
});
export type BackupPartition = Static<typeof BackupPartition>;

export const BackupFileEntry = Type.Object({
  name: Type.String({ maxLength: 255 }),
  type: Type.Union([
    Type.Literal('file'),
    Type.Literal('directory'),
    Type.Literal('symlink'),
    Type.Literal('other'),
  ]),
  mode: Type.String({ maxLength: 8 }),
  uid: Type.Integer(),
  gid: Type.Integer(),
  size: Type.Integer(),
});

export const BackupFileListing = Type.Object({
  partitions: Type.Array(BackupPartition),
  /** The partition read (null: the whole disk). */
  partition: Type.Union([Type.Integer(), Type.Null()]),
  path: Type.String(),
  entries: Type.Array(BackupFileEntry),
  /** More entries than a listing holds (10,000). */
  truncated: Type.Boolean(),
});
export type BackupFileListing = Static<typeof BackupFileListing>;

/**
 * An offsite copy: the backups of `source` not yet in `target` copied there, each chunk stored
 * under the target's key (src/backup/datastore/sync.ts); a host reaching both directories does it.
 */
export const SyncDatastoreRequest = Type.Object(
  {
    source: DatastoreAccess,
    target: DatastoreAccess,
    /** Only these groups (VMs); all when absent. */
    groups: Type.Optional(Type.Array(BackupName, { maxItems: 100000 })),
    /** Refuse a target that is not encrypted. */
    encryptedOnly: Type.Boolean(),
  },
  { additionalProperties: false },
);
export type SyncDatastoreRequest = Static<typeof SyncDatastoreRequest>;

export const SyncDatastoreResult = Type.Object({
  copied: Type.Array(Type.Object({ group: BackupName, id: BackupName })),
  present: Type.Integer(),
  chunksRead: Type.Integer(),
  bytesRead: Type.Integer(),
  chunksWritten: Type.Integer(),
  bytesWritten: Type.Integer(),
});
export type SyncDatastoreResult = Static<typeof SyncDatastoreResult>;

export const SyncDatastoreReport = transferReport(SyncDatastoreResult);
export type SyncDatastoreReport = Static<typeof SyncDatastoreReport>;
