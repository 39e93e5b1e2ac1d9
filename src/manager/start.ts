/** Starts a manager: database, task recovery, host links, REST API. */
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../log.ts';
import { ClusterCa } from '../pki/ca.ts';
import { managerDiskFullAlert, managerDiskFullId } from './alerts/rules.ts';
import { AlertStore } from './alerts/store.ts';
import type { ApiServices } from './api/context.ts';
import { type ApiTls, buildApi } from './api/server.ts';
import { AuditLog } from './audit/log.ts';
import { ensureAdmin } from './auth/bootstrap.ts';
import type { RouteRule } from './auth/permissions.ts';
import { Authenticator } from './auth/principal.ts';
import { SessionStore } from './auth/sessions.ts';
import { TokenStore } from './auth/tokens.ts';
import { Datastores } from './backup/datastores.ts';
import { BackupInventory } from './backup/inventory.ts';
import { BackupJobs } from './backup/jobs.ts';
import { BackupScheduler } from './backup/scheduler.ts';
import { BackupSlots } from './backup/slots.ts';
import { Placer } from './cluster/placer.ts';
import { SettingsStore } from './cluster/settings.ts';
import { type Db, openDatabase } from './db/database.ts';
import { DiskSpace } from './db/disk-space.ts';
import type { VmTable } from './db/schema.ts';
import { EventBus } from './events/bus.ts';
import { admitProtected } from './ha/admit-start.ts';
import { acknowledgeAssignment, haAssignment } from './ha/assignment.ts';
import { HaMonitor } from './ha/monitor.ts';
import { buildClusterEndpoint } from './hosts/cluster-endpoint.ts';
import { JoinTokens } from './hosts/join.ts';
import { HostRegistry } from './hosts/registry.ts';
import { Directory } from './identity/directory.ts';
import { GroupStore } from './identity/groups.ts';
import { Login } from './identity/login.ts';
import { UserStore } from './identity/users.ts';
import { ImagePoolStore } from './imagepools/store.ts';
import { prepareStart } from './imagepools/tasks.ts';
import { ImageStore } from './library/images.ts';
import { TemplateStore } from './library/templates.ts';
import { NetworkSync } from './networks/host-sync.ts';
import { PortRulesSync } from './networks/port-sync.ts';
import { SecurityGroupStore } from './networks/security-groups.ts';
import { NetworkStore } from './networks/store.ts';
import { ProjectStore } from './projects/store.ts';
import { agentReplicaHosts } from './replication/agent-hosts.ts';
import { factsForSite } from './replication/primary-facts.ts';
import { Replications } from './replication/relationships.ts';
import { RemoteReplicas } from './replication/remote-replicas.ts';
import { ReplicationScheduler } from './replication/scheduler.ts';
import { registerSiteReplicaRoutes } from './replication/site-endpoint.ts';
import { SiteReplicas } from './replication/site-replicas.ts';
import { stopStaleCopies } from './replication/stale-copies.ts';
import type { KeyStoreConfig } from './secrets/keystore.ts';
import { openKeyStore } from './secrets/keystores/open.ts';
import { SecretStore } from './secrets/store.ts';
import { registerSiteRoutes } from './sites/endpoint.ts';
import { SiteStore } from './sites/store.ts';
import { registerTaskKinds } from './task-kinds.ts';
import { TaskEngine } from './tasks/engine.ts';
import { hostGate } from './tasks/host-gate.ts';
import { Orphans } from './vms/orphans.ts';
import { prepareNetworks } from './vms/start-networks.ts';
import { VmStore } from './vms/store.ts';
import { sweepStrandedCreations } from './vms/stranded.ts';

export interface ManagerOptions {
  database: string;
  host: string;
  port: number;
  /** The HTTPS port agents join and report on (0: any free port). */
  clusterPort: number;
  /**
   * Where the cluster port listens (default: `host`). Hosts on other machines must reach it,
   * while the API for people can stay on loopback.
   */
  clusterHost?: string;
  /**
   * Where the key-encryption keys live (default: the file `<database dir>.keys/kek.json`,
   * outside the database's directory, so a copy of that directory holds no key).
   */
  keyStore?: KeyStoreConfig;
  /**
   * The API's certificate and key (PEM) when the operator provides them; by default the
   * cluster CA issues one for the names and addresses the API is reached by.
   */
  tls?: ApiTls;
  /**
   * How many days audit records are kept: a whole number, or 0 for ever (the default); without
   * it, the retention set before stays.
   */
  auditRetentionDays?: number;
  log: Logger;
}

export function defaultKeyStore(database: string): KeyStoreConfig {
  const dir = path.dirname(path.resolve(database));
  return { kind: 'file', path: path.join(`${dir}.keys`, 'kek.json') };
}

export interface RunningManager {
  /** The API for people (https). */
  url: string;
  /** The CA (PEM) that signed the API's certificate; null when the operator gave the certificate. */
  apiCa: string | null;
  /** The cluster endpoint agents join through. */
  clusterUrl: string;
  ca: ClusterCa;
  db: Db;
  services: ApiServices;
  /** What each API route needs, by `METHOD /route`, as the routes declare it. */
  routeAccess: ReadonlyMap<string, RouteRule>;
  close(): Promise<void>;
  /** Stops at once, leaving tasks as a crash would (for recovery tests). */
  crash(): Promise<void>;
}

export async function startManager(opts: ManagerOptions): Promise<RunningManager> {
  const space = new DiskSpace(opts.database);
  space.setLogger(opts.log);
  const db = await openDatabase(opts.database, space);
  // Before anything else: a manager that cannot read its secrets does not start.
  const keyStore = openKeyStore(opts.keyStore ?? defaultKeyStore(opts.database));
  let secrets: SecretStore;
  try {
    secrets = await SecretStore.open(db, keyStore, opts.log);
  } catch (err) {
    await keyStore.close();
    await db.destroy();
    throw err;
  }
  // The CA lives beside the database, never in it: a copy of the database alone cannot
  // impersonate the manager to its hosts.
  const pki = path.join(path.dirname(path.resolve(opts.database)), 'pki');
  const ca = await ClusterCa.open(pki);
  const clusterHost = opts.clusterHost ?? opts.host;
  const advertised = clusterHost === '0.0.0.0' ? os.hostname() : clusterHost;
  const identity = await ca.managerIdentity(pki, [
    ...new Set([advertised, '127.0.0.1', 'localhost', os.hostname()]),
  ]);
  const apiTls = opts.tls ?? (await ca.apiIdentity(pki, apiNames(everywhere(opts.host) ? null : opts.host)));
  const bus = new EventBus();
  const store = new VmStore(db, bus);
  const hosts = new HostRegistry(db, store, opts.log, identity, bus);
  const joinTokens = new JoinTokens(db);
  const tasks = new TaskEngine(db, bus, opts.log);
  const settings = new SettingsStore(db);
  const users = new UserStore(db);
  const groups = new GroupStore(db);
  const sessions = new SessionStore(db);
  const tokens = new TokenStore(db);
  const directory = new Directory(db, secrets);
  await ensureAdmin(db, users);
  const alerts = new AlertStore(db, bus);
  const securityGroups = new SecurityGroupStore(db);
  // Running ports follow their security groups: every change that may move them is one the
  // networks follow too.
  const portRulesSync = new PortRulesSync({
    db,
    log: opts.log,
    securityGroups,
    agentOf: (hostId) => hosts.client(hostId),
  });
  const networkSync = new NetworkSync({
    db,
    log: opts.log,
    agentOf: (hostId) => hosts.client(hostId),
    onChange: () => portRulesSync.changed(),
  });
  const placer = new Placer(db, settings);
  const datastores = new Datastores(db, secrets, hosts);
  const replicaHosts = agentReplicaHosts(hosts);
  const sites = new SiteStore(db, identity);
  const remoteReplicas = new RemoteReplicas(sites);
  const replications = new Replications(db, store, hosts, replicaHosts, { sites, remoteReplicas });
  // The cluster endpoint's address is known once it listens, after the services are made.
  const joining = { url: '', caFingerprint: ca.fingerprint };
  const base = {
    db,
    placer,
    admitStart: (row: VmTable, hostId: string) => admitProtected({ db, placer }, row, hostId),
    store,
    hosts,
    templates: new TemplateStore(db),
    bus,
    tasks,
    tokens,
    users,
    groups,
    sessions,
    authenticator: new Authenticator(users, tokens, sessions),
    login: new Login(users, groups, directory),
    directory,
    projects: new ProjectStore(db),
    audit: new AuditLog(db, (err) => opts.log.error({ err }, 'could not write the audit log')),
    secrets,
    images: new ImageStore(db),
    alerts,
    imagePools: new ImagePoolStore(db),
    networks: new NetworkStore(db),
    securityGroups,
    networkSync,
    joinTokens,
    joining,
    orphans: new Orphans({ db, hosts, store, alerts, log: opts.log }),
    datastores,
    backups: new BackupInventory(db),
    backupJobs: new BackupJobs(db, datastores),
    backupSlots: new BackupSlots(),
    replicaHosts,
    replications,
    sites,
    remoteReplicas,
    siteReplicas: new SiteReplicas({
      db,
      store,
      hosts,
      replicaHosts,
      replications,
      self: () => ({ url: joining.url, caPem: ca.certPem }),
    }),
  };
  // Every full report of a host is compared with the inventory for what no VM accounts for.
  hosts.onReported((hostId) => void base.orphans.scan(hostId));
  // A host that (re)connected may have missed changes, or lost its networks with a reboot.
  hosts.onReported((hostId) => base.networkSync.hostReported(hostId));
  hosts.onReported((hostId) => portRulesSync.hostReported(hostId));
  // A replica reported running is a copy that must not run (a forced failover's old primary).
  hosts.onReported((hostId) => void stopStaleCopies({ ...base, log: opts.log }, hostId));
  const withHa = Object.assign(base, { ha: new HaMonitor(base, tasks, opts.log) });
  // Every kind, the HA failover too, before recovery: an interrupted task resumes whatever serves HTTP.
  const services: ApiServices = Object.assign(withHa, { kinds: registerTaskKinds(withHa, tasks) });
  services.beforeStart = async (vmId) => {
    await prepareStart(services, vmId);
    await prepareNetworks(services, vmId);
  };
  const stopNetworkWatch = services.networkSync.watch(bus);
  const stopPortWatch = portRulesSync.watch(bus);
  const stopAlerts = services.alerts.watch();
  watchDiskSpace(space, services);
  if (opts.auditRetentionDays !== undefined)
    await services.audit.setRetention(opts.auditRetentionDays === 0 ? null : opts.auditRetentionDays);
  const prune = () =>
    services.audit.prune().catch((err: Error) => opts.log.error({ err }, 'pruning the audit log failed'));
  await prune();
  const pruning = setInterval(prune, 3600_000).unref();
  const app = await buildApi(services, opts.log, apiTls);
  await hosts.start();
  // Each recovered task waits
  // in the background for its hosts, so the agents (in all-in-one, the local one) can connect.
  await tasks.recover(hostGate(db, hosts));
  // After recovery has its tasks, before the API takes new ones: a create killed before its
  // task was recorded leaves a VM nothing would ever finish.
  await sweepStrandedCreations({ ...services, log: opts.log });
  services.ha.start(services.kinds.haFailover);
  // After recovery: a job run the last manager left is failed before a new one is due.
  services.backupScheduler = new BackupScheduler({ ...services, log: opts.log }, services.kinds.backupJob);
  services.backupScheduler.start();
  services.replicationScheduler = new ReplicationScheduler(
    { ...services, log: opts.log },
    services.kinds.replicationCycle,
  );
  services.replicationScheduler.start();
  const cluster = await buildClusterEndpoint({
    ca,
    identity,
    joinTokens,
    hosts,
    haAssignment: (hostId) => haAssignment(db, settings, hostId),
    haAcknowledged: (hostId, current, generation) => acknowledgeAssignment(db, hostId, current, generation),
    routes: (app) => {
      registerSiteRoutes(app, { sites: services.sites, caFingerprint: ca.fingerprint });
      registerSiteReplicaRoutes(app, {
        sites: services.sites,
        replicas: services.siteReplicas,
        agentOf: (hostId) => hosts.client(hostId).transport,
        primaryFacts: (site, id) => factsForSite(services, site, id),
      });
    },
    log: opts.log,
  });
  await cluster.listen({ host: clusterHost, port: opts.clusterPort });
  services.joining.url = `https://${advertised}:${portOf(cluster.server, opts.clusterPort)}`;
  await app.listen({ host: opts.host, port: opts.port });
  const port = portOf(app.server, opts.port);
  opts.log.info({ port, cluster: services.joining.url }, 'manager listening');
  return {
    url: `https://${urlHost(everywhere(opts.host) ? '127.0.0.1' : opts.host)}:${port}`,
    apiCa: opts.tls ? null : ca.certPem,
    clusterUrl: services.joining.url,
    ca,
    db,
    services,
    routeAccess: app.routeAccess,
    async close() {
      clearInterval(pruning);
      services.networkSync.close();
      stopNetworkWatch();
      portRulesSync.close();
      stopPortWatch();
      space.close();
      services.ha.stop();
      services.backupScheduler?.stop();
      services.replicationScheduler?.stop();
      stopAlerts();
      await tasks.close();
      hosts.close();
      await app.close();
      await cluster.close();
      await services.audit.close();
      await keyStore.close();
      await db.destroy();
    },
    async crash() {
      clearInterval(pruning);
      services.networkSync.close();
      stopNetworkWatch();
      portRulesSync.close();
      stopPortWatch();
      space.close();
      services.ha.stop();
      services.backupScheduler?.stop();
      services.replicationScheduler?.stop();
      stopAlerts();
      tasks.abandon();
      hosts.close();
      await app.close();
      await cluster.close();
      await keyStore.close();
      await db.destroy();
    },
  };
}

/**
 * A full disk is an alert (held in memory until it can be written); when there is room again,
 * what could not be recorded meanwhile is: held alerts, what each host runs (its full report),
 * and the end of tasks that finished while nothing could be written (their cleanup runs again).
 */
function watchDiskSpace(space: DiskSpace, s: ApiServices): void {
  space.onFull(() => {
    void s.alerts.raise(managerDiskFullAlert(space.describe())).catch(() => {});
  });
  space.onRoom(async () => {
    await s.alerts.clear(managerDiskFullId);
    await s.alerts.catchUp();
    s.hosts.resync();
    await s.tasks.catchUp();
  });
}

function portOf(server: { address(): unknown }, fallback: number): number {
  const addr = server.address();
  return typeof addr === 'object' && addr && 'port' in addr ? (addr.port as number) : fallback;
}

/**
 * The names and addresses the API is reached by: the one it listens on, or (on every address)
 * each address of this machine; always loopback and the host name.
 */
export function apiNames(listen: string | null): string[] {
  const names = ['localhost', '127.0.0.1', '::1', os.hostname()];
  if (listen !== null) names.push(listen);
  else
    for (const list of Object.values(os.networkInterfaces()))
      for (const a of list ?? []) names.push(a.address.replace(/%.*$/, ''));
  return [...new Set(names)];
}

const everywhere = (host: string) => host === '0.0.0.0' || host === '::';

function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}
