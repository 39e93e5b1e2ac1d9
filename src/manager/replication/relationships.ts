/**
 * Replication relationships as the manager keeps them: one `replications` row per replicated
 * VM (one per VM for now) and its replica, a VM row on the target host, `stopped`, with
 * `replica_of` set (nothing starts it but a failover) and a spec whose disks are the newest
 * recovery point's files (replica-spec.ts), so placement, quotas and HA count it where it is.
 * The replica has no NIC rows: its NICs are the primary's (same MACs, same addresses), which
 * only one of the two may use at a time, and the primary holds them until a failover.
 */
import { TernError } from '../../errors.ts';
import type { CreateReplicationBody, RecoveryPointInfo, Replication } from '../../wire/api/replication.ts';
import type { Db } from '../db/database.ts';
import type { ReplicationTable, VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { SiteStore } from '../sites/store.ts';
import type { VmStore } from '../vms/store.ts';
import { createRelationship } from './create.ts';
import type { ReplicaHosts } from './host-calls.ts';
import { RecoveryPoints } from './recovery-points.ts';
import type { RemoteReplicas } from './remote-replicas.ts';
import { replicaName, replicaSpec } from './replica-spec.ts';
import { rpoOf } from './rpo-view.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The lock of a relationship: its cycles, a failover and a removal never overlap. */
export const replicationObject = (id: string) => `replication:${id}`;

export class Replications {
  readonly #db: Db;
  readonly #store: VmStore;
  readonly #hosts: HostRegistry;
  readonly #replicaHosts: ReplicaHosts;
  readonly #sites: SiteStore | null;
  readonly #remote: RemoteReplicas | null;
  /** The recovery points recorded for each relationship. */
  readonly points: RecoveryPoints;

  constructor(
    db: Db,
    store: VmStore,
    hosts: HostRegistry,
    replicaHosts: ReplicaHosts,
    sites: { sites: SiteStore; remoteReplicas: RemoteReplicas } | null = null,
  ) {
    this.#db = db;
    this.#store = store;
    this.#hosts = hosts;
    this.#replicaHosts = replicaHosts;
    this.#sites = sites?.sites ?? null;
    this.#remote = sites?.remoteReplicas ?? null;
    this.points = new RecoveryPoints(db);
  }

  async create(body: CreateReplicationBody): Promise<Replication> {
    const row = await createRelationship(
      { db: this.#db, store: this.#store, hosts: this.#hosts, sites: this.#sites, remote: this.#remote },
      body,
    );
    // As read back: the site's answer may name its replica's host and pool.
    return row.targetSiteId === null ? this.toWire(row) : this.show(row.id);
  }

  /**
   * Deleting a replica would take a recovery point's files with it, and deleting a replicated
   * VM would leave its relationship cycling on nothing: both go through the relationship.
   */
  async refuseDelete(vm: Pick<VmTable, 'id' | 'name' | 'replicaOf'>): Promise<void> {
    const live = ['initial', 'replicating', 'paused'];
    const of = vm.replicaOf ? await this.find(vm.replicaOf) : undefined;
    // A primary kept from starting after a failover without reverse replication is not one.
    if (of && live.includes(of.state)) {
      const primary = await this.#store.find(of.vmId);
      throw new TernError(
        'conflict',
        `VM ${vm.name} is a replica: remove its replication instead (tern replication remove ${primary?.name ?? vm.replicaOf})`,
        { replication: vm.replicaOf },
      );
    }
    const rel = await this.#db
      .selectFrom('replications')
      .select(['id', 'state'])
      .where('vmId', '=', vm.id)
      .where('state', 'in', live)
      .executeTakeFirst();
    if (rel)
      throw new TernError(
        'conflict',
        `VM ${vm.name} is replicated: remove its replication first (tern replication remove ${vm.name})`,
        { replication: rel.id },
      );
  }

  /** A relationship by its VM's name or id, or by its own id. */
  async row(ref: string): Promise<ReplicationTable> {
    if (uuidPattern.test(ref)) {
      const byId = await this.#db
        .selectFrom('replications')
        .selectAll()
        .where('id', '=', ref)
        .executeTakeFirst();
      if (byId) return byId;
    }
    const vm = await this.#store.find(ref);
    const row = vm
      ? await this.#db.selectFrom('replications').selectAll().where('vmId', '=', vm.id).executeTakeFirst()
      : undefined;
    if (!row) throw new TernError('not_found', `VM ${ref} is not replicated (no replication ${ref})`);
    return row;
  }

  async find(id: string): Promise<ReplicationTable | undefined> {
    return this.#db.selectFrom('replications').selectAll().where('id', '=', id).executeTakeFirst();
  }

  async rows(): Promise<ReplicationTable[]> {
    return this.#db.selectFrom('replications').selectAll().orderBy('createdAt').execute();
  }

  async list(): Promise<Replication[]> {
    return Promise.all((await this.rows()).map((r) => this.toWire(r)));
  }

  async show(ref: string): Promise<Replication> {
    return this.toWire(await this.row(ref));
  }

  async update(id: string, changes: Partial<Omit<ReplicationTable, 'id' | 'createdAt'>>): Promise<void> {
    await this.#db.updateTable('replications').set(changes).where('id', '=', id).execute();
  }

  async pause(ref: string): Promise<Replication> {
    const row = await this.row(ref);
    drivenHere(row);
    if (row.state === 'failed-over')
      throw new TernError('conflict', 'this replication has failed over: nothing to pause');
    if (row.state !== 'paused') await this.update(row.id, { state: 'paused' });
    return this.show(row.id);
  }

  async resume(ref: string): Promise<Replication> {
    const row = await this.row(ref);
    drivenHere(row);
    if (row.state !== 'paused')
      throw new TernError('conflict', `this replication is ${row.state}, not paused`);
    const points = await this.points.of(row.id);
    await this.update(row.id, { state: points.length > 0 ? 'replicating' : 'initial' });
    return this.show(row.id);
  }

  /**
   * Removes a relationship: its files on the target host, its replica VM row, its points and
   * its row. Refused while a cycle runs, and while a VM other than the replica stands on one of
   * its points (a test failover's copy), naming those VMs. `force` forgets a replica whose host
   * is offline, leaving its files there (said in the answer's audit detail).
   */
  async remove(ref: string, force = false): Promise<string | null> {
    const row = await this.row(ref);
    drivenHere(row);
    const busy = await this.#db
      .selectFrom('taskLocks')
      .select('taskId')
      .where('object', '=', replicationObject(row.id))
      .executeTakeFirst();
    if (busy)
      throw new TernError('locked', `replication ${row.id} is busy with task ${busy.taskId}; wait for it`);
    const lent = await this.lentTo(row);
    if (lent.length > 0)
      throw new TernError(
        'conflict',
        `VM(s) ${lent.join(', ')} stand on recovery points of this replica: delete them first`,
        { vms: lent },
      );
    let note: string | null = null;
    if (row.targetSiteId !== null) {
      if (!this.#sites || !this.#remote) throw new TernError('unavailable', 'this manager keeps no sites');
      const site = await this.#sites.byId(row.targetSiteId);
      if (site) await this.#remote.remove(site, row.id);
      else note = 'the site keeping the replica is no longer trusted: its files stay there';
    } else {
      const host = await this.#hosts.get(row.targetHostId).catch(() => null);
      if (host && host.state !== 'offline') {
        await this.#replicaHosts.removeReplica(row.targetHostId, row.id, row.targetPool);
      } else if (!force) {
        throw new TernError(
          'conflict',
          `host ${host?.name ?? row.targetHostId} is offline: its replica files cannot be removed now (force forgets them, leaving the files)`,
        );
      } else
        note = `left the replica's files in pool ${row.targetPool} of offline host ${host?.name ?? row.targetHostId}`;
    }
    await this.#db.deleteFrom('recoveryPoints').where('replicationId', '=', row.id).execute();
    await this.#db.deleteFrom('replications').where('id', '=', row.id).execute();
    if (await this.#store.find(row.replicaVmId)) await this.#store.remove(row.replicaVmId);
    return note;
  }

  /** The VMs (besides the replica) whose disks are files of this replica: they pin its points. */
  async lentTo(row: ReplicationTable): Promise<string[]> {
    // Another site keeps it, and refuses a removal itself while something stands on it.
    if (row.targetSiteId !== null) return [];
    const prefix = `replicas/${row.id}/`;
    const vms = await this.#db
      .selectFrom('vms')
      .select(['id', 'name', 'spec'])
      .where('hostId', '=', row.targetHostId)
      .where('id', '!=', row.replicaVmId)
      .execute();
    return vms
      .filter((v) =>
        vmSpecOf(v).disks.some((d) => d.volume.pool === row.targetPool && d.volume.path.startsWith(prefix)),
      )
      .map((v) => v.name);
  }

  /** A relationship's recorded points as shown (recovery-points.ts). */
  async pointsWire(ref: string): Promise<RecoveryPointInfo[]> {
    return this.points.wire(await this.row(ref));
  }

  /** Points the replica's spec stands on: its disks are switched to the newest point's files. */
  async pointReplicaAt(row: ReplicationTable, point: string | null): Promise<void> {
    const [primary, replica] = await Promise.all([
      this.#store.find(row.vmId),
      this.#store.find(row.replicaVmId),
    ]);
    if (!replica) return;
    // The primary's spec now (a disk added since is seen at its next cycle), else the replica's own.
    const base = vmSpecOf(primary ?? replica);
    const spec = replicaSpec(
      base,
      { id: replica.id, name: replica.name, pool: row.targetPool, replicationId: row.id },
      point,
    );
    const text = JSON.stringify(spec);
    if (text !== replica.spec)
      await this.#store.update(replica.id, {
        spec: text,
        ...(primary ? { diskSizes: primary.diskSizes } : {}),
      });
  }

  async toWire(row: ReplicationTable): Promise<Replication> {
    const siteId = row.targetSiteId ?? row.sourceSiteId;
    const [vm, replica, host, points, task, site] = await Promise.all([
      this.#store.find(row.vmId),
      this.#store.find(row.replicaVmId),
      row.targetSiteId ? null : this.#hosts.get(row.targetHostId).catch(() => null),
      this.points.of(row.id),
      row.lastTaskId
        ? this.#db
            .selectFrom('tasks')
            .select(['state', 'startedAt', 'createdAt'])
            .where('id', '=', row.lastTaskId)
            .executeTakeFirst()
        : undefined,
      siteId && this.#sites ? this.#sites.byId(siteId) : undefined,
    ]);
    const newest = points.at(-1) ?? null;
    const running = task && (task.state === 'running' || task.state === 'queued');
    const vmName = vm?.name ?? row.sourceVmName ?? row.vmId;
    return {
      id: row.id,
      vm: vmName,
      vmId: row.vmId,
      // A site names its replica as this cluster would (replica-spec.ts).
      replica: replica?.name ?? (row.targetSiteId ? replicaName(vmName) : row.replicaVmId),
      replicaVmId: row.replicaVmId,
      host: host?.name ?? (row.targetHostId || 'pending'),
      pool: row.targetPool,
      intervalSeconds: row.intervalS,
      points: row.points,
      appConsistentEverySeconds: row.appConsistentEveryS,
      bandwidth: row.bandwidth,
      state: row.state as Replication['state'],
      rpo: rpoOf(
        row,
        newest ? Date.parse(newest.takenAt) : null,
        running ? Date.parse(task.startedAt ?? task.createdAt) : null,
        Date.now(),
      ),
      resyncReason: row.resyncReason,
      lastError: row.lastError,
      lastCycleAt: row.lastCycleAt,
      lastTask: row.lastTaskId,
      newestPoint: newest?.id ?? null,
      pointCount: points.length,
      reverseOf: row.reverseOf,
      site: siteId
        ? { name: site?.name ?? siteId, direction: row.targetSiteId ? ('to' as const) : ('from' as const) }
        : null,
      createdAt: row.createdAt,
    };
  }
}

/** Refuses to act on a replica kept here for another site: that site drives it. */
export function drivenHere(row: ReplicationTable): void {
  if (row.sourceSiteId !== null)
    throw new TernError(
      'conflict',
      `this replica is kept here for ${row.sourceVmName ?? row.vmId} of another site: that site drives it`,
    );
}
