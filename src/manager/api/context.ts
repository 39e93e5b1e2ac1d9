/** What route modules are given: the manager's services, and the Fastify instance type. */

import type { BodyPaces } from '../../http/body-pace.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { AuditLog } from '../audit/log.ts';
import type { Authenticator } from '../auth/principal.ts';
import type { SessionStore } from '../auth/sessions.ts';
import type { TokenStore } from '../auth/tokens.ts';
import type { Datastores } from '../backup/datastores.ts';
import type { BackupInventory } from '../backup/inventory.ts';
import type { BackupJobs } from '../backup/jobs.ts';
import type { BackupScheduler } from '../backup/scheduler.ts';
import type { BackupSlots } from '../backup/slots.ts';
import type { HaMonitor } from '../ha/monitor.ts';
import type { JoinTokens } from '../hosts/join.ts';
import type { Directory } from '../identity/directory.ts';
import type { GroupStore } from '../identity/groups.ts';
import type { Login } from '../identity/login.ts';
import type { UserStore } from '../identity/users.ts';
import type { ImagePoolStore } from '../imagepools/store.ts';
import type { ImageStore } from '../library/images.ts';
import type { NetworkSync } from '../networks/host-sync.ts';
import type { SecurityGroupStore } from '../networks/security-groups.ts';
import type { NetworkStore } from '../networks/store.ts';
import type { ProjectStore } from '../projects/store.ts';
import type { ReplicaHosts } from '../replication/host-calls.ts';
import type { Replications } from '../replication/relationships.ts';
import type { RemoteReplicas } from '../replication/remote-replicas.ts';
import type { ReplicationScheduler } from '../replication/scheduler.ts';
import type { SiteReplicas } from '../replication/site-replicas.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { SiteStore } from '../sites/store.ts';
import type { TaskKinds } from '../task-kinds.ts';
import type { TaskEngine } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import type { Orphans } from '../vms/orphans.ts';

/** The API for people, served over HTTPS only. */
export type { App } from '../../http/app.ts';

export interface ApiServices extends VmDeps {
  tasks: TaskEngine;
  /** Every task kind, registered before recovery (task-kinds.ts); handlers submit these. */
  kinds: TaskKinds;
  tokens: TokenStore;
  users: UserStore;
  groups: GroupStore;
  sessions: SessionStore;
  authenticator: Authenticator;
  login: Login;
  directory: Directory;
  projects: ProjectStore;
  audit: AuditLog;
  secrets: SecretStore;
  images: ImageStore;
  alerts: AlertStore;
  imagePools: ImagePoolStore;
  networks: NetworkStore;
  securityGroups: SecurityGroupStore;
  /** Gives hosts their networks on every change and when they (re)connect. */
  networkSync: NetworkSync;
  joinTokens: JoinTokens;
  /** What hosts hold for VMs the inventory does not know. */
  orphans: Orphans;
  /** Backup datastores (their keys kept as secrets) and the backups recorded in them. */
  datastores: Datastores;
  backups: BackupInventory;
  /** Backup jobs, the backups running at once per host and datastore, and what runs jobs on schedule. */
  backupJobs: BackupJobs;
  backupSlots: BackupSlots;
  /** Other Tern clusters this one trusts (replication targets). */
  sites: SiteStore;
  /** Replicas kept here for other sites' VMs. */
  siteReplicas: SiteReplicas;
  /** Replicas other sites keep for this cluster's VMs: the calls to them. */
  remoteReplicas: RemoteReplicas;
  backupScheduler?: BackupScheduler;
  /** Replicated VMs: their relationships, replicas and recovery points. */
  replications: Replications;
  /** What replication asks of hosts (their agents' replica routes), a failover's lend and adopt too. */
  replicaHosts: ReplicaHosts;
  /** Starts cycles when they are due and keeps RPO alerts in step (after recovery). */
  replicationScheduler?: ReplicationScheduler;
  /** The HA watch: what it says of each host. */
  ha: HaMonitor;
  /** Where agents join, and the CA fingerprint they pin. */
  joining: { url: string; caFingerprint: string };
  /** How fast request bodies must arrive (default: defaultBodyPaces; tests make them quick). */
  bodyPaces?: BodyPaces;
  /** Largest image upload accepted (default: maxUploadBytes()). */
  maxUploadBytes?: number;
}
