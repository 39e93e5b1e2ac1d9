/** The backup tables (migrations 0019–0020), part of schema.ts's Database. */

/** A backup datastore (wire Datastore); its key, when encrypted, is the secret `datastore:<id>`. */
export interface DatastoreTable {
  id: string;
  name: string;
  path: string;
  /** The host that reaches it; null: every host mounts it at `path`. */
  hostId: string | null;
  encrypted: number;
  chunkSize: number;
  createdAt: string;
}

/** A finished backup of a VM in a datastore (its manifest committed). */
export interface BackupTable {
  datastoreId: string;
  vmId: string;
  /** The backup's id: its UTC time, `YYYY-MM-DDTHH-MM-SSZ`. */
  id: string;
  vmName: string;
  /** JSON VM spec as it was backed up. */
  spec: string;
  jobId: string | null;
  taskId: string | null;
  consistency: string;
  consistencyNote: string | null;
  /** JSON array of wire BackupDiskResult. */
  disks: string;
  sizeBytes: number;
  changedBytes: number;
  readBytes: number;
  newBytes: number;
  manifestSha256: string;
  startedAt: string;
  createdAt: string;
  verifiedAt: string | null;
  /** 1 when the last verify found every chunk whole, 0 when not, null when never verified. */
  verifyOk: number | null;
  /** JSON array of the problems the last verify named. */
  verifyProblems: string | null;
  /** When a restore test booted it; JSON of what that test measured. */
  provenAt: string | null;
  proof: string | null;
}

/** A backup job: JSON selection and retention, calendar schedule, bounds. */
export interface BackupJobTable {
  id: string;
  name: string;
  datastoreId: string;
  selection: string;
  schedule: string;
  retention: string;
  concurrencyPerHost: number;
  concurrencyPerDatastore: number;
  /** Bytes per second each VM's backup reads; 0: no limit. */
  bandwidth: number;
  /** 1: each backup the job makes is proven by booting it (backup.prove). */
  prove: number;
  enabled: number;
  lastRunAt: string | null;
  nextRunAt: string | null;
  /** JSON of the last run's outcome. */
  lastResult: string | null;
  lastTaskId: string | null;
  createdAt: string;
}
