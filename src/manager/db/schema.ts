/** Row types of the manager's tables (camelCase here, snake_case in SQL through CamelCasePlugin). */
import type { Generated } from 'kysely';
import type { BackupJobTable, BackupTable, DatastoreTable } from './backup-schema.ts';
import type {
  FailoverTable,
  RecoveryPointTable,
  ReplicaTestTable,
  ReplicationTable,
  SiteTable,
} from './replication-schema.ts';

export interface HostTable {
  id: string;
  name: string;
  address: string;
  state: string;
  lastSeen: string | null;
  facts: string | null;
  createdAt: string;
  certFingerprint: string | null;
  certSerial: string | null;
  certExpiresAt: string | null;
  joinedAt: string | null;
  haSlot: number | null;
  /** JSON array of the VM ids the host confirmed it protects (HA), or null. */
  haAcknowledged: string | null;
}

export interface JoinTokenTable {
  id: string;
  hostName: string;
  secretHash: string;
  createdAt: string;
  expiresAt: string;
  usedAt: string | null;
}

export interface RevokedCertificateTable {
  serial: string;
  fingerprint: string;
  hostName: string;
  revokedAt: string;
}

export interface PlacementGroupTable {
  name: string;
  kind: string;
  createdAt: string;
}

export interface PlacementGroupMemberTable {
  groupName: string;
  vmId: string;
}

export interface SettingTable {
  key: string;
  value: string;
}

export interface TemplateTable {
  name: string;
  description: string;
  machine: string;
  vcpus: number;
  memoryMib: number;
  diskPool: string;
  diskPath: string;
  diskSizeBytes: number;
  boot: string | null;
  createdAt: string;
  hostId: string | null;
  /** How the VM it was sealed from was generalized (wire Generalization); null: not sealed by Tern. */
  generalization: string | null;
  /** What its clones share because it was not generalized. */
  risk: string | null;
  /** bios or uefi: what VMs made from it boot with. */
  firmware: string;
  /** linux, windows or other, as its maker said; null for templates from before it was asked. */
  osKind: string | null;
}

export interface VmTable {
  id: string;
  name: string;
  hostId: string | null;
  state: string;
  stateReason: string | null;
  template: string | null;
  /** The library image its first disk was made from (a linked clone on it needs it). */
  image: string | null;
  clone: string | null;
  clientMachineId: string | null;
  /** For members of an image pool: the pool, and the version their write cache sits on. */
  imagePool: string | null;
  poolVersion: number | null;
  cpuMode: string;
  /** JSON VmHaPolicy; null: not protected. */
  haPolicy: string | null;
  /**
   * The failed host an HA failover moved this VM from, until the failover has seen it run
   * (or gave up on a best-effort VM): a half-done restart, which that failover finishes, also
   * after a manager restart. Null otherwise.
   */
  haRestartFrom: string | null;
  /** The replication whose replica this VM is (stopped, never started by accident); null otherwise. */
  replicaOf: string | null;
  /** JSON of the VM spec without the runtime-only fields. */
  spec: string;
  diskSizes: string;
  guest: string;
  vncPort: number | null;
  ownerId: string | null;
  project: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface TaskTable {
  id: string;
  kind: string;
  objects: string;
  state: string;
  step: string;
  progress: number;
  cancelRequested: number;
  params: string;
  result: string | null;
  error: string | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The user who asked for the task; null for the manager's own. */
  requestedBy: string | null;
}

export interface TaskLogTable {
  id: Generated<number>;
  taskId: string;
  time: string;
  line: string;
}

export interface TaskLockTable {
  object: string;
  taskId: string;
}

export interface ApiTokenTable {
  id: string;
  name: string;
  hash: string;
  role: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  /** The user the token acts for; null only for tokens made before users existed. */
  userId: string | null;
  /** JSON array of permissions the token is narrowed to; null: all of its user's. */
  scopes: string | null;
  revokedAt: string | null;
}

export interface UserTable {
  id: string;
  name: string;
  displayName: string | null;
  /** `local` (password here) or `ldap` (password checked by the directory). */
  source: string;
  /** scrypt, see identity/passwords.ts; null for directory users. */
  passwordHash: string | null;
  /** A role given to the user directly, besides those of its groups. */
  role: string | null;
  disabled: number;
  createdAt: string;
  lastLoginAt: string | null;
}

export interface UserGroupTable {
  name: string;
  role: string;
  /** A directory group (DN or cn) whose members belong to this group when they log in. */
  ldapGroup: string | null;
  createdAt: string;
}

export interface UserGroupMemberTable {
  groupName: string;
  userId: string;
}

export interface SessionTable {
  /** SHA-256 of the session cookie's value. */
  hash: string;
  userId: string;
  createdAt: string;
  expiresAt: string;
  lastSeenAt: string;
  sourceIp: string | null;
}

export interface ProjectTable {
  name: string;
  description: string;
  maxVms: number | null;
  maxVcpus: number | null;
  maxMemoryMib: number | null;
  maxDiskBytes: number | null;
  createdAt: string;
}

export interface ProjectMemberTable {
  project: string;
  /** `user` (member is a user id) or `group` (a group name). */
  kind: string;
  member: string;
}

export interface AuditLogTable {
  seq: Generated<number>;
  at: string;
  actor: string;
  actorId: string | null;
  /** `token`, `session`, `password`, `ldap`, or `anonymous`. */
  via: string;
  action: string;
  object: string;
  sourceIp: string | null;
  /** `ok`, `denied` or `failed`. */
  result: string;
  status: number | null;
  detail: string | null;
}

export interface SecretTable {
  id: string;
  name: string;
  kind: string;
  /** What the secret belongs to (`vm:<id>`, `setting:ldap`), if anything. */
  object: string | null;
  ownerId: string | null;
  /** The key-encryption key that wraps this secret's data key. */
  kekId: string;
  /** JSON Envelope, see secrets/envelope.ts. */
  envelope: string;
  createdAt: string;
  updatedAt: string;
}

export interface ImageTable {
  name: string;
  kind: string;
  format: string;
  sourceFormat: string;
  hostId: string | null;
  pool: string;
  path: string;
  virtualBytes: number;
  actualBytes: number;
  sha256: string | null;
  createdAt: string;
}

export interface AlertTable {
  seq: Generated<number>;
  id: string;
  severity: string;
  object: string;
  message: string;
  raisedAt: string;
  clearedAt: string | null;
}

export interface ImagePoolTable {
  name: string;
  template: string;
  hostId: string;
  diskPool: string;
  cache: string;
  maxUnavailablePercent: number;
  chainLimit: number;
  production: number;
  previous: number | null;
  createdAt: string;
}

export interface ImagePoolVersionTable {
  pool: string;
  number: number;
  parent: number | null;
  state: string;
  maintenanceVm: string | null;
  createdAt: string;
}

/** A volume kept on purpose when its VM went (vm delete --keep-disks, an adopted orphan). */
export interface KeptVolumeTable {
  pool: string;
  path: string;
  keptAt: string;
}

/** A managed network (wire Network); its DNS resolvers a JSON array. */
export interface NetworkTable {
  id: string;
  name: string;
  type: string;
  subnet: string;
  gateway: string | null;
  /** The bridge's MAC on every host: one gateway neighbour for an overlay's VMs. */
  gatewayMac: string;
  dns: string;
  dhcpStart: string | null;
  dhcpEnd: string | null;
  domain: string | null;
  uplink: string | null;
  vlan: number | null;
  vni: number | null;
  mtu: number;
  bridge: string;
  createdAt: string;
}

export interface SecurityGroupTable {
  id: string;
  name: string;
  inbound: string;
  outbound: string;
  /** JSON array of wire SecurityRule. */
  rules: string;
  createdAt: string;
}

/** One NIC of a VM: its MAC unique cluster-wide; on a managed network, its address unique there. */
export interface NicTable {
  mac: string;
  vmId: string;
  networkId: string | null;
  ip: string | null;
  securityGroup: string | null;
  createdAt: string;
}

/** What a host last said of a network (wire HostNetworkState). */
export interface HostNetworkTable {
  hostId: string;
  networkId: string;
  state: string;
  reason: string | null;
  dhcp: string;
  ports: number;
  updatedAt: string;
}

export type { BackupJobTable, BackupTable, DatastoreTable } from './backup-schema.ts';

export type {
  FailoverTable,
  RecoveryPointTable,
  ReplicaTestTable,
  ReplicationTable,
  SiteTable,
} from './replication-schema.ts';

export interface Database {
  failovers: FailoverTable;
  sites: SiteTable;
  replications: ReplicationTable;
  replicaTests: ReplicaTestTable;
  recoveryPoints: RecoveryPointTable;
  datastores: DatastoreTable;
  backups: BackupTable;
  backupJobs: BackupJobTable;
  networks: NetworkTable;
  hostNetworks: HostNetworkTable;
  securityGroups: SecurityGroupTable;
  nics: NicTable;
  keptVolumes: KeptVolumeTable;
  imagePools: ImagePoolTable;
  imagePoolVersions: ImagePoolVersionTable;
  alerts: AlertTable;
  hosts: HostTable;
  joinTokens: JoinTokenTable;
  revokedCertificates: RevokedCertificateTable;
  placementGroups: PlacementGroupTable;
  placementGroupMembers: PlacementGroupMemberTable;
  settings: SettingTable;
  templates: TemplateTable;
  vms: VmTable;
  tasks: TaskTable;
  taskLog: TaskLogTable;
  taskLocks: TaskLockTable;
  apiTokens: ApiTokenTable;
  images: ImageTable;
  users: UserTable;
  userGroups: UserGroupTable;
  userGroupMembers: UserGroupMemberTable;
  sessions: SessionTable;
  projects: ProjectTable;
  projectMembers: ProjectMemberTable;
  auditLog: AuditLogTable;
  secrets: SecretTable;
}
