/**
 * Who keeps a replica, as a cycle, a prune or a removal sees it: a host of this cluster (its
 * agent, through host-calls.ts) or another site (its manager, ../sites/remote-replicas.ts).
 * Both answer the same questions; only a host of this cluster has a replica VM row here.
 */
import { TernError } from '../../errors.ts';
import type { PrepareReceiveReply, ReplicaStatus } from '../../wire/replication.ts';
import type { SitePrepareBody } from '../../wire/site.ts';
import type { ReplicationTable, SiteTable } from '../db/schema.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { SiteStore } from '../sites/store.ts';
import type { ReplicaHosts } from './host-calls.ts';
import type { RemoteReplicas } from './remote-replicas.ts';

export interface ReplicaSideDeps {
  hosts: HostRegistry;
  replicaHosts: ReplicaHosts;
  sites: SiteStore;
  remoteReplicas: RemoteReplicas;
}

/** A prepared cycle: the ticket, and where the primary's host streams (and the CA it checks there). */
export interface PreparedCycle extends PrepareReceiveReply {
  url: string;
  ca: string | null;
}

export interface ReplicaSide {
  /** `host b` or `site beta`, for messages. */
  readonly name: string;
  /** True when the replica is a VM row of this cluster (a host here keeps it). */
  readonly local: boolean;
  /** Refuses at once when the keeper is known to be unreachable (a host offline). */
  ready(): Promise<void>;
  /** Waits, bounded, until the keeper can answer (a host reported again); for cleanups. */
  reachable(timeoutMs: number, waiting: (what: string) => Promise<void>): Promise<void>;
  status(): Promise<ReplicaStatus>;
  prepare(req: SitePrepareBody): Promise<PreparedCycle>;
  prune(keep: string[]): Promise<ReplicaStatus>;
  remove(): Promise<void>;
}

export async function replicaSideOf(d: ReplicaSideDeps, row: ReplicationTable): Promise<ReplicaSide> {
  if (row.targetSiteId !== null) {
    const site = await siteById(d.sites, row.targetSiteId);
    return {
      name: `site ${site.name}`,
      local: false,
      ready: async () => {},
      reachable: async () => {},
      status: () => d.remoteReplicas.status(site, row.id),
      prepare: (req) => d.remoteReplicas.prepare(site, row.id, req),
      prune: (keep) => d.remoteReplicas.prune(site, row.id, { keep }),
      remove: () => d.remoteReplicas.remove(site, row.id),
    };
  }
  const host = await d.hosts.get(row.targetHostId);
  const hostId = row.targetHostId;
  return {
    name: `host ${host.name}`,
    local: true,
    async ready() {
      const now = await d.hosts.get(hostId);
      if (now.state === 'offline') throw new TernError('unavailable', `host ${now.name} is offline`);
    },
    async reachable(timeoutMs, waiting) {
      await d.hosts.whenReported(hostId, timeoutMs, undefined, (name) => waiting(`host ${name}`));
    },
    status: () => d.replicaHosts.replicaStatus(hostId, row.id, row.targetPool),
    async prepare(req) {
      const reply = await d.replicaHosts.prepareReceive(hostId, row.id, { ...req, pool: row.targetPool });
      return { ...reply, url: d.replicaHosts.receiveUrl(hostId, row.id), ca: null };
    },
    prune: (keep) => d.replicaHosts.prunePoints(hostId, row.id, { pool: row.targetPool, keep }),
    remove: () => d.replicaHosts.removeReplica(hostId, row.id, row.targetPool),
  };
}

async function siteById(sites: SiteStore, id: string): Promise<SiteTable> {
  const site = await sites.byId(id);
  if (!site)
    throw new TernError('not_found', `the site this replication goes to (${id}) is no longer trusted`);
  return site;
}
