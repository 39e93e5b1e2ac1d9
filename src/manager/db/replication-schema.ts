/** The replication and sites tables (migrations 0021–0025), part of schema.ts's Database. */

/** A VM replicated to another host (migration 0021 tells the columns). */
export interface ReplicationTable {
  id: string;
  vmId: string;
  replicaVmId: string;
  targetHostId: string;
  targetPool: string;
  intervalS: number;
  points: number;
  appConsistentEveryS: number;
  bandwidth: number;
  state: string;
  resyncReason: string | null;
  lastError: string | null;
  lastCycleAt: string | null;
  lastTaskId: string | null;
  /** The replication this one reverses after a planned failover; null otherwise. */
  reverseOf: string | null;
  /** Primary's side: the site keeping the replica (migration 0024); null: a host of this cluster. */
  targetSiteId: string | null;
  /** Replica's side: the site whose VM this replicates, driving its cycles; null: this cluster's. */
  sourceSiteId: string | null;
  sourceVmName: string | null;
  createdAt: string;
}

/** A committed recovery point on a replica. */
export interface RecoveryPointTable {
  replicationId: string;
  /** The UTC time of the primary's view, `YYYY-MM-DDTHH-MM-SSZ`. */
  id: string;
  takenAt: string;
  consistency: string;
  consistencyNote: string | null;
  /** JSON array of wire ReplicatedDisk. */
  disks: string;
  dirtyBytes: number;
  sentBytes: number;
  taskId: string | null;
  createdAt: string;
}

/** A test failover's VM: which replication and point it tests (migration 0022). */
export interface ReplicaTestTable {
  vmId: string;
  replicationId: string;
  pointId: string;
  /** The isolated network the test made for itself (removed with it); null: the operator's. */
  networkId: string | null;
  createdAt: string;
}

/** Another Tern cluster trusted by its CA (wire Site). */
export interface SiteTable {
  id: string;
  name: string;
  url: string;
  caPem: string;
  fingerprint: string;
  createdAt: string;
}

/** A failover of a replication: the point its replica runs on (migration 0025). */
export interface FailoverTable {
  replicationId: string;
  pointId: string;
  /** 1: planned (the primary shut down, its last changes sent). */
  planned: number;
  taskId: string;
  createdAt: string;
}
