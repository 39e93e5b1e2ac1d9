/**
 * /api/v1/backup/jobs: backup jobs (a selection of VMs, a calendar schedule, a retention, bounds
 * on how many backups run at once and on bandwidth), run on schedule or now; and the restore
 * test that proves a backup by booting it. Runs and proofs are tasks (202).
 */
import { type Static, Type } from 'typebox';
import { BackupName } from '../backup.ts';
import { ErrorBody, Name, Timestamp, Uuid } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

const count = (description: string) =>
  Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000, description }));

/** Proxmox's prune options: how many periods each rule keeps; none at all keeps everything. */
export const Retention = Type.Object(
  {
    'keep-last': count('the newest N backups'),
    'keep-hourly': count('the newest backup of each of the last N hours that have one'),
    'keep-daily': count('… of the last N days'),
    'keep-weekly': count('… of the last N ISO weeks'),
    'keep-monthly': count('… of the last N months'),
    'keep-yearly': count('… of the last N years'),
  },
  { additionalProperties: false },
);
export type Retention = Static<typeof Retention>;

const VmRef = Type.String({ minLength: 1, maxLength: 63, description: 'VM name or id' });

/** The outcome of a job's last run, as its task ended. */
export const BackupJobResult = Type.Object({
  state: Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')]),
  vms: Type.Integer(),
  failed: Type.Integer(),
  message: Type.String(),
});
export type BackupJobResult = Static<typeof BackupJobResult>;

export const BackupJob = Type.Object({
  id: Uuid,
  name: Name,
  datastore: Name,
  /** The selection as written: VMs by name (or id when deleted since), groups, projects. */
  vms: Type.Array(Type.String()),
  groups: Type.Array(Name),
  projects: Type.Array(Name),
  schedule: Type.String(),
  retention: Retention,
  concurrencyPerHost: Type.Integer(),
  concurrencyPerDatastore: Type.Integer(),
  /** Bytes per second each VM's backup reads; 0: no limit. */
  bandwidth: Type.Integer(),
  /** Each backup it makes is proven by booting it before the run counts it done. */
  prove: Type.Boolean(),
  enabled: Type.Boolean(),
  lastRunAt: Type.Union([Timestamp, Type.Null()]),
  nextRunAt: Type.Union([Timestamp, Type.Null()]),
  lastResult: Type.Union([BackupJobResult, Type.Null()]),
  lastTask: Type.Union([Uuid, Type.Null()]),
  /** The next runs after now (show only). */
  nextRuns: Type.Optional(Type.Array(Timestamp)),
  createdAt: Timestamp,
});
export type BackupJob = Static<typeof BackupJob>;

export const CreateBackupJobBody = Type.Object(
  {
    name: Name,
    datastore: Name,
    vms: Type.Optional(Type.Array(VmRef, { maxItems: 1000 })),
    groups: Type.Optional(Type.Array(Name, { maxItems: 100 })),
    projects: Type.Optional(Type.Array(Name, { maxItems: 100 })),
    schedule: Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'a calendar event: "daily 02:00", "mon..fri 22:30", "every 15m", "*-*-01 03:00"',
    }),
    retention: Type.Optional(Retention),
    concurrencyPerHost: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, description: 'default 1' })),
    concurrencyPerDatastore: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 256, description: 'default 4' }),
    ),
    bandwidth: Type.Optional(
      Type.Integer({ minimum: 0, description: 'bytes per second each VM reads; 0: no limit' }),
    ),
    prove: Type.Optional(
      Type.Boolean({
        description: 'prove each backup by booting it as a throwaway VM without a NIC (default false)',
      }),
    ),
    enabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CreateBackupJobBody = Static<typeof CreateBackupJobBody>;

export const UpdateBackupJobBody = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean()),
    prove: Type.Optional(Type.Boolean()),
    schedule: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    retention: Type.Optional(Retention),
    /** A list given replaces the job's; one not given stays. */
    vms: Type.Optional(Type.Array(VmRef, { maxItems: 1000 })),
    groups: Type.Optional(Type.Array(Name, { maxItems: 100 })),
    projects: Type.Optional(Type.Array(Name, { maxItems: 100 })),
  },
  { additionalProperties: false },
);
export type UpdateBackupJobBody = Static<typeof UpdateBackupJobBody>;

/** What a restore test measured: a running guest, and how long it took to get there. */
export const BackupProof = Type.Object({
  host: Name,
  /** From the throwaway VM's start to its guest agent answering. */
  secondsToGuest: Type.Number(),
  /** From the start of the restore to the guest agent answering. */
  secondsTotal: Type.Number(),
  guestOs: Type.Union([Type.String(), Type.Null()]),
  task: Uuid,
});
export type BackupProof = Static<typeof BackupProof>;

export const ProveBackupBody = Type.Object(
  {
    host: Type.Optional(Name),
    pool: Type.Optional(Name),
    /** How long to wait for the guest agent once the VM runs (default 300 s). */
    timeoutS: Type.Optional(Type.Integer({ minimum: 5, maximum: 3600 })),
  },
  { additionalProperties: false },
);
export type ProveBackupBody = Static<typeof ProveBackupBody>;

const JobRef = Type.Object({ job: Name });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const tags = ['backup'];

export const backupJobRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/backup/jobs',
    summary: 'Backup jobs, with their next and last runs',
    tags,
    reply: { 200: Type.Object({ items: Type.Array(BackupJob) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/backup/jobs',
    summary: 'Make a backup job: VMs, placement groups or projects on a calendar schedule, with retention',
    tags,
    body: CreateBackupJobBody,
    reply: { 201: BackupJob, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/backup/jobs/:job',
    summary: 'Show a backup job and its next runs',
    tags,
    params: JobRef,
    reply: { 200: BackupJob, ...errors },
  }),
  update: route({
    method: 'PATCH',
    path: '/api/v1/backup/jobs/:job',
    summary: 'Enable or disable a job, change its schedule, retention, proving or selection',
    tags,
    params: JobRef,
    body: UpdateBackupJobBody,
    reply: { 200: BackupJob, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/backup/jobs/:job',
    summary: 'Remove a backup job (its backups stay)',
    tags,
    params: JobRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  run: route({
    method: 'POST',
    path: '/api/v1/backup/jobs/:job/run',
    summary: 'Run a backup job now',
    tags,
    params: JobRef,
    reply: { 202: TaskAccepted, ...errors },
  }),
  prove: route({
    method: 'POST',
    path: '/api/v1/backups/:vm/:backup/prove',
    summary:
      'Prove a backup: restore it as a throwaway VM without a NIC, boot it, wait for its guest agent, delete it',
    tags,
    params: Type.Object({ vm: VmRef, backup: BackupName }),
    query: Type.Object({ datastore: Type.Optional(Name) }),
    body: ProveBackupBody,
    reply: { 202: TaskAccepted, ...errors },
  }),
};
