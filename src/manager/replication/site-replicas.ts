/**
 * Replicas this cluster keeps for VMs of other sites: the replica's side of replication across
 * sites. The primary's site drives every cycle through `/site/v1/replicas/…` (endpoint.ts); here
 * each call is checked against the site that made the replica, mapped onto the host and pool
 * this site chose, and passed to that host's agent. The relationship is a `replications` row with
 * `source_site_id` set (never scheduled here), its replica a stopped VM row that only a failover
 * starts, its points recorded from what the host holds (reality wins).
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Host } from '../../wire/host.ts';
import type { ReplicaStatus } from '../../wire/replication.ts';
import type {
  SitePrepareBody,
  SitePrepareReply,
  SitePruneBody,
  SiteReplica,
  SiteReplicaCreate,
} from '../../wire/site.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { emptyGuestInfo } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { ReplicationTable, VmTable } from '../db/schema.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TrustedSite } from '../sites/trust.ts';
import type { VmStore } from '../vms/store.ts';
import { agreeOnPoints } from './agree.ts';
import type { ReplicaHosts } from './host-calls.ts';
import type { Replications } from './relationships.ts';
import { replicaName, replicaSpec } from './replica-spec.ts';

export interface SiteReplicasDeps {
  db: Db;
  store: VmStore;
  hosts: HostRegistry;
  replicaHosts: ReplicaHosts;
  replications: Replications;
  /** This cluster's endpoint (where other sites' hosts stream) and CA. */
  self: () => { url: string; caPem: string };
}

export class SiteReplicas {
  readonly #d: SiteReplicasDeps;

  constructor(deps: SiteReplicasDeps) {
    this.#d = deps;
  }

  /** Makes the replica (idempotent for the same site and replication: a retried create). */
  async create(site: TrustedSite, body: SiteReplicaCreate): Promise<SiteReplica> {
    const { db, store, hosts } = this.#d;
    const existing = await db
      .selectFrom('replications')
      .selectAll()
      .where('id', '=', body.replication)
      .executeTakeFirst();
    if (existing) {
      if (existing.sourceSiteId !== site.id)
        throw new TernError(
          'conflict',
          `replication ${body.replication} exists here and is not site ${site.name}'s`,
        );
      return this.#answer(existing);
    }
    const { host, pool } = chooseHost(await hosts.list(), body.pool);
    const replicaId = randomUUID();
    const name = replicaName(body.vm.name);
    if (await store.find(name))
      throw new TernError('conflict', `a VM named ${name} exists at this site: rename it or the primary`);
    const spec = replicaSpec(
      portable(body.spec),
      { id: replicaId, name, pool, replicationId: body.replication },
      null,
    );
    const createdAt = now();
    const replica: VmTable = {
      id: replicaId,
      name,
      hostId: host.id,
      state: 'stopped',
      stateReason: `replica of ${body.vm.name} at site ${site.name}`,
      template: null,
      image: null,
      clone: null,
      clientMachineId: null,
      imagePool: null,
      poolVersion: null,
      cpuMode: 'compat',
      haPolicy: null,
      haRestartFrom: null,
      replicaOf: body.replication,
      spec: JSON.stringify(spec),
      diskSizes: JSON.stringify(spec.disks.map(() => 0)),
      guest: JSON.stringify(emptyGuestInfo()),
      vncPort: null,
      ownerId: null,
      project: null,
      createdAt,
      updatedAt: createdAt,
    };
    const row: ReplicationTable = {
      id: body.replication,
      vmId: body.vm.id,
      replicaVmId: replicaId,
      targetHostId: host.id,
      targetPool: pool,
      intervalS: body.intervalS,
      points: body.points,
      appConsistentEveryS: 0,
      bandwidth: 0,
      state: 'initial',
      resyncReason: null,
      lastError: null,
      lastCycleAt: null,
      lastTaskId: null,
      reverseOf: null,
      targetSiteId: null,
      sourceSiteId: site.id,
      sourceVmName: body.vm.name,
      createdAt,
    };
    await store.insert(replica, []);
    try {
      await db.insertInto('replications').values(row).execute();
    } catch (err) {
      await store.remove(replicaId);
      throw err;
    }
    return this.#answer(row);
  }

  async prepare(site: TrustedSite, id: string, body: SitePrepareBody): Promise<SitePrepareReply> {
    const row = await this.row(site, id);
    if (row.state === 'failed-over')
      throw new TernError(
        'conflict',
        `the replica of ${row.sourceVmName ?? row.vmId} failed over at this site and runs here: no cycle reaches it`,
      );
    const reply = await this.#d.replicaHosts.prepareReceive(row.targetHostId, id, {
      ...body,
      pool: row.targetPool,
    });
    const self = this.#d.self();
    return { ...reply, url: `${self.url}/site/v1/replicas/${id}/receive`, ca: self.caPem };
  }

  async status(site: TrustedSite, id: string): Promise<ReplicaStatus> {
    const row = await this.row(site, id);
    return this.#agree(row, await this.#d.replicaHosts.replicaStatus(row.targetHostId, id, row.targetPool));
  }

  async prune(site: TrustedSite, id: string, body: SitePruneBody): Promise<ReplicaStatus> {
    const row = await this.row(site, id);
    const status = await this.#d.replicaHosts.prunePoints(row.targetHostId, id, {
      ...body,
      pool: row.targetPool,
    });
    return this.#agree(row, status);
  }

  /** Removes the replica, its files and its points; refused while a VM stands on one of them. */
  async remove(site: TrustedSite, id: string): Promise<void> {
    const row = await this.row(site, id);
    const replica = await this.#d.store.find(row.replicaVmId);
    if (replica && replica.replicaOf === null)
      throw new TernError(
        'conflict',
        `the replica ${replica.name} was failed over here and runs as a VM of its own`,
      );
    await this.#d.replicaHosts.removeReplica(row.targetHostId, id, row.targetPool);
    await this.#d.db.deleteFrom('recoveryPoints').where('replicationId', '=', id).execute();
    await this.#d.db.deleteFrom('replications').where('id', '=', id).execute();
    if (replica) await this.#d.store.remove(replica.id);
  }

  /** The relationship `id`, when site `site` made it. */
  async row(site: TrustedSite, id: string): Promise<ReplicationTable> {
    const row = await this.#d.db
      .selectFrom('replications')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row || row.sourceSiteId !== site.id)
      throw new TernError('not_found', `site ${site.name} has no replica ${id} here`);
    return row;
  }

  async #answer(row: ReplicationTable): Promise<SiteReplica> {
    const host = await this.#d.hosts.get(row.targetHostId);
    const replica = await this.#d.store.row(row.replicaVmId);
    return { host: host.name, pool: row.targetPool, replicaVm: replica.name, replicaVmId: replica.id };
  }

  /** The points the host holds, recorded here; the replica's disks on the newest. */
  async #agree(row: ReplicationTable, status: ReplicaStatus): Promise<ReplicaStatus> {
    await agreeOnPoints(this.#d.replications, row, status);
    const newest = status.points.at(-1)?.id ?? null;
    await this.#d.replications.update(row.id, {
      lastCycleAt: now(),
      ...(newest !== null && row.state === 'initial' ? { state: 'replicating' } : {}),
    });
    return status;
  }
}

/** The primary's spec without what names the other site's networks and pools. */
function portable(spec: VmSpec): VmSpec {
  return { ...spec, nics: [], disks: spec.disks.filter((d) => !d.readonly) };
}

/** An online host with the pool (or any pool), the one with the most room in it. */
export function chooseHost(hosts: readonly Host[], pool: string | undefined): { host: Host; pool: string } {
  const fits = hosts
    .filter((h) => h.state === 'online')
    .flatMap((h) =>
      (h.facts?.pools ?? [])
        .filter((p) => (pool === undefined ? true : p.name === pool))
        .map((p) => ({ host: h, pool: p.name, free: p.freeBytes })),
    )
    .sort((a, b) => b.free - a.free);
  const best = fits[0];
  if (!best)
    throw new TernError(
      'conflict',
      pool === undefined
        ? 'no host of this site is online with a pool'
        : `no online host of this site has pool ${pool}`,
    );
  return { host: best.host, pool: best.pool };
}
