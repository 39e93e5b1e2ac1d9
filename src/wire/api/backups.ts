/**
 * /api/v1/backup: datastores (where backups go, with their key kept by the manager) and the
 * backups of VMs in them, each with what it cost: size, changed bytes, new bytes stored, dedup.
 * Running, restoring, verifying, pruning and collecting garbage are tasks (202).
 */
import { type Static, Type } from 'typebox';
import { BackupDiskResult, BackupName, ChunkSize, DatastoreStatus } from '../backup.ts';
import { ErrorBody, Name, Timestamp, Uuid } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

export const Datastore = Type.Object({
  id: Uuid,
  name: Name,
  path: Type.String(),
  /** The host that reaches it; null: shared, every host mounts it at `path`. */
  host: Type.Union([Name, Type.Null()]),
  encrypted: Type.Boolean(),
  chunkSize: Type.Integer(),
  /** Backups of it in the inventory. */
  backups: Type.Integer(),
  createdAt: Timestamp,
  /** What a host sees of it now (show only): null with `statusError` when no host could say. */
  status: Type.Optional(Type.Union([DatastoreStatus, Type.Null()])),
  statusError: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type Datastore = Static<typeof Datastore>;

export const CreateDatastoreBody = Type.Object(
  {
    name: Name,
    path: Type.String({ minLength: 2, maxLength: 1024, pattern: '^/', description: 'absolute directory' }),
    host: Type.Optional(
      Type.String({ ...Name, description: 'the host that reaches it; absent: every host mounts it at path' }),
    ),
    encrypt: Type.Optional(
      Type.Boolean({ description: 'AES-256-GCM with a key the manager keeps as a secret' }),
    ),
    chunkSize: Type.Optional(ChunkSize),
  },
  { additionalProperties: false },
);
export type CreateDatastoreBody = Static<typeof CreateDatastoreBody>;

/** One backup of a VM, with its figures, whether it verified and whether a restore test booted it. */
export const Backup = Type.Object({
  datastore: Name,
  vm: Uuid,
  vmName: Name,
  id: BackupName,
  /** Full when any disk was read whole. */
  mode: Type.Union([Type.Literal('full'), Type.Literal('incremental')]),
  consistency: Type.Union([Type.Literal('application'), Type.Literal('crash')]),
  consistencyNote: Type.Union([Type.String(), Type.Null()]),
  /** The disks' sizes added up: what a restore writes. */
  sizeBytes: Type.Integer(),
  /** Bytes the dirty bitmaps marked (or, for a disk read whole, held data). */
  changedBytes: Type.Integer(),
  readBytes: Type.Integer(),
  /** Bytes of chunks this backup added to the datastore (after zstd and dedup). */
  newBytes: Type.Integer(),
  /** sizeBytes / newBytes: how much smaller than a copy this backup's storage was; null when it stored nothing new. */
  dedupRatio: Type.Union([Type.Number(), Type.Null()]),
  disks: Type.Array(BackupDiskResult),
  startedAt: Timestamp,
  createdAt: Timestamp,
  verified: Type.Union([
    Type.Object({ at: Timestamp, ok: Type.Boolean(), problems: Type.Array(Type.String()) }),
    Type.Null(),
  ]),
  proven: Type.Union([Type.Object({ at: Timestamp, detail: Type.Unknown() }), Type.Null()]),
  job: Type.Union([Type.String(), Type.Null()]),
  task: Type.Union([Type.String(), Type.Null()]),
});
export type Backup = Static<typeof Backup>;

export const RunBackupBody = Type.Object(
  {
    vm: Type.String({ minLength: 1, maxLength: 63, description: 'VM name or id' }),
    datastore: Name,
    freeze: Type.Optional(
      Type.Boolean({ description: "freeze the guest's filesystems for the view (default true)" }),
    ),
    bandwidth: Type.Optional(Type.Integer({ minimum: 0, description: 'bytes per second read; 0: no limit' })),
  },
  { additionalProperties: false },
);
export type RunBackupBody = Static<typeof RunBackupBody>;

export const RestoreBackupBody = Type.Object(
  {
    /** new: a new VM from the backup; in-place: the backed-up VM's disks overwritten (stopped, confirmed). */
    mode: Type.Optional(Type.Union([Type.Literal('new'), Type.Literal('in-place')])),
    name: Type.Optional(Name),
    host: Type.Optional(Name),
    pool: Type.Optional(Name),
    start: Type.Optional(Type.Boolean()),
    bandwidth: Type.Optional(
      Type.Integer({ minimum: 0, description: 'bytes per second written; 0: no limit' }),
    ),
    /** An in-place restore overwrites the VM's disks: it must be asked for explicitly. */
    confirm: Type.Optional(Type.Boolean()),
    /** New VM only: it runs at once from the backup while its data streams in underneath. */
    live: Type.Optional(Type.Boolean()),
    /** Only these disks of the backup (`disk1`…): in place, the VM's other disks are left as they are. */
    disks: Type.Optional(Type.Array(BackupName, { minItems: 1, maxItems: 16 })),
  },
  { additionalProperties: false },
);
export type RestoreBackupBody = Static<typeof RestoreBackupBody>;

export const VerifyBody = Type.Object(
  {
    vm: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    /** Only backups not verified for this many days (never verified included). */
    olderThanDays: Type.Optional(Type.Integer({ minimum: 0, maximum: 36500 })),
  },
  { additionalProperties: false },
);
export type VerifyBody = Static<typeof VerifyBody>;

const DatastoreRef = Type.Object({ datastore: Name });
const BackupRef = Type.Object({ vm: Type.String({ minLength: 1, maxLength: 63 }), backup: BackupName });
const InDatastore = Type.Object({ datastore: Type.Optional(Name) });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const tags = ['backup'];

export const backupRoutes = {
  datastores: route({
    method: 'GET',
    path: '/api/v1/backup/datastores',
    summary: 'Backup datastores',
    tags,
    reply: { 200: Type.Object({ items: Type.Array(Datastore) }), ...errors },
  }),
  createDatastore: route({
    method: 'POST',
    path: '/api/v1/backup/datastores',
    summary: 'Make a datastore in a directory a host reaches (its key, when encrypted, kept by the manager)',
    tags,
    body: CreateDatastoreBody,
    reply: { 201: Datastore, ...errors },
  }),
  showDatastore: route({
    method: 'GET',
    path: '/api/v1/backup/datastores/:datastore',
    summary: 'Show a datastore and what a host sees of it',
    tags,
    params: DatastoreRef,
    reply: { 200: Datastore, ...errors },
  }),
  deleteDatastore: route({
    method: 'DELETE',
    path: '/api/v1/backup/datastores/:datastore',
    summary: 'Forget a datastore that holds no backup and no job uses (its files stay)',
    tags,
    params: DatastoreRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  verify: route({
    method: 'POST',
    path: '/api/v1/backup/datastores/:datastore/verify',
    summary: "Re-read backups' chunks and check each against its name",
    tags,
    params: DatastoreRef,
    body: VerifyBody,
    reply: { 202: TaskAccepted, ...errors },
  }),
  gc: route({
    method: 'POST',
    path: '/api/v1/backup/datastores/:datastore/gc',
    summary: 'Remove chunks no backup names (never one a running backup may still use)',
    tags,
    params: DatastoreRef,
    reply: { 202: TaskAccepted, ...errors },
  }),
  list: route({
    method: 'GET',
    path: '/api/v1/backups',
    summary: 'Backups, newest first, of one VM or of all',
    tags,
    query: Type.Object({
      vm: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
      datastore: Type.Optional(Name),
    }),
    reply: { 200: Type.Object({ items: Type.Array(Backup) }), ...errors },
  }),
  run: route({
    method: 'POST',
    path: '/api/v1/backups',
    summary: 'Back up a VM now (incremental when its dirty bitmap can be trusted)',
    tags,
    body: RunBackupBody,
    reply: { 202: TaskAccepted, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/backups/:vm/:backup',
    summary: 'Show one backup of a VM (name or id; a deleted VM by id)',
    tags,
    params: BackupRef,
    query: InDatastore,
    reply: { 200: Backup, ...errors },
  }),
  prune: route({
    method: 'DELETE',
    path: '/api/v1/backups/:vm/:backup',
    summary: 'Forget one backup (its chunks go at the next garbage collection)',
    tags,
    params: BackupRef,
    query: InDatastore,
    reply: { 202: TaskAccepted, ...errors },
  }),
  restore: route({
    method: 'POST',
    path: '/api/v1/backups/:vm/:backup/restore',
    summary: 'Restore a backup as a new VM on any host and pool, or in place (confirmed)',
    tags,
    params: BackupRef,
    query: InDatastore,
    body: RestoreBackupBody,
    reply: { 202: TaskAccepted, ...errors },
  }),
};
