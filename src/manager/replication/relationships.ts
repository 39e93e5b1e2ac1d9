/**
 * Replication relationships as the manager keeps them: one `replications` row per replicated
 * VM (one per VM for now) and its replica, a VM row on the target host, `stopped`, with
 * `replica_of` set (nothing starts it but a failover) and a spec whose disks are the newest
 * recovery point's files (replica-spec.ts), so placement, quotas and HA count it where it is.
 * The replica has no NIC rows: its NICs are the primary's (same MACs, same addresses), which
 * only one of the two may use at a time, and the primary holds them until a failover.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { CreateReplicationBody, RecoveryPointInfo, Replication } from '../../wire/api/replication.ts';
import type { Host } from '../../wire/host.ts';
import type { ReplicaPoint, ReplicatedDisk, ReplicateVmResult } from '../../wire/replication.ts';
import { type Db, now } from '../db/database.ts';
import type { RecoveryPointTable, ReplicationTable, VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { SiteStore } from '../sites/store.ts';
import type { VmStore } from '../vms/store.ts';
import type { ReplicaHosts } from './host-calls.ts';
import { appConsistentPeriodOf, intervalOf, pointPeriodMs } from './intervals.ts';
import { markPoints } from './points.ts';
import type { RemoteReplicas } from './remote-replicas.ts';
import { replicaName, replicaSpec, replicatedDisks, unreachableFiles } from './replica-spec.ts';
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
  }

  async create(body: CreateReplicationBody): Promise<Replication> {
    const intervalS = intervalOf(body.every);
    const appS = appConsistentPeriodOf(body.appConsistentEvery ?? '0', intervalS);
    if ((body.host === undefined) === (body.site === undefined))
      throw new TernError('invalid_request', 'name where the replica goes: a host of this cluster or a site');
    const vm = await this.#store.row(body.vm);
    if (vm.replicaOf)
      throw new TernError(
        'conflict',
        `VM ${vm.name} is a replica: replicate its primary, or fail over first`,
      );
    if (vm.state === 'creating' || vm.state === 'deleting')
      throw new TernError('conflict', `VM ${vm.name} is ${vm.state}`);
    if (!vm.hostId) throw new TernError('conflict', `VM ${vm.name} has no host`);
    const spec = vmSpecOf(vm);
    if (replicatedDisks(spec).length === 0)
      throw new TernError('conflict', `VM ${vm.name} has no writable disk to replicate`);
    const existing = await this.#db
      .selectFrom('replications')
      .select('id')
      .where('vmId', '=', vm.id)
      .executeTakeFirst();
    if (existing)
      throw new TernError('conflict', `VM ${vm.name} is replicated already (replication ${existing.id})`);
    if (body.site !== undefined) return this.#createToSite(body, vm, intervalS, appS);
    const host = await this.#hosts.get(body.host!);
    if (host.id === vm.hostId)
      throw new TernError(
        'invalid_request',
        `VM ${vm.name} runs on ${host.name}: replicate it to another host`,
      );
    if (host.state !== 'online')
      throw new TernError('conflict', `host ${host.name} is ${host.state}: it cannot take a replica now`);
    const pool = targetPool(
      host,
      body.pool ?? spec.disks.find((d) => !d.readonly)?.volume.pool,
      body.pool !== undefined,
    );
    const source = await this.#hosts.get(vm.hostId);
    const unreachable = unreachableFiles(spec, source.facts ?? null, host.facts ?? null);
    if (unreachable) throw new TernError('conflict', unreachable);

    const id = randomUUID();
    const replicaId = randomUUID();
    const name = replicaName(vm.name);
    const rspec = replicaSpec(spec, { id: replicaId, name, pool, replicationId: id }, null);
    const createdAt = now();
    const replica: VmTable = {
      ...vm,
      id: replicaId,
      name,
      hostId: host.id,
      state: 'stopped',
      stateReason: null,
      haPolicy: null,
      haRestartFrom: null,
      replicaOf: id,
      spec: JSON.stringify(rspec),
      guest: '{}',
      vncPort: null,
      createdAt,
      updatedAt: createdAt,
    };
    const row: ReplicationTable = {
      id,
      vmId: vm.id,
      replicaVmId: replicaId,
      targetHostId: host.id,
      targetPool: pool,
      intervalS,
      points: body.points ?? 0,
      appConsistentEveryS: appS,
      bandwidth: body.bandwidth ?? 0,
      state: 'initial',
      resyncReason: null,
      lastError: null,
      lastCycleAt: null,
      lastTaskId: null,
      reverseOf: null,
      targetSiteId: null,
      sourceSiteId: null,
      sourceVmName: null,
      createdAt,
    };
    // The replica first: a name taken refuses the whole, and no relationship is left without one.
    await this.#store.insert(replica, []);
    try {
      await this.#db.insertInto('replications').values(row).execute();
    } catch (err) {
      await this.#store.remove(replicaId);
      throw err;
    }
    return this.toWire(row);
  }

  /**
   * A relationship whose replica another site keeps: the row first (so a crash leaves a row
   * whose cycles say the site has no replica, never a replica nobody here knows), then the
   * site makes the replica on a host and pool of its choosing; if it refuses, the row goes.
   */
  async #createToSite(
    body: CreateReplicationBody,
    vm: VmTable,
    intervalS: number,
    appS: number,
  ): Promise<Replication> {
    if (!this.#sites || !this.#remote) throw new TernError('unavailable', 'this manager keeps no sites');
    const site = await this.#sites.row(body.site!);
    const unreachable = unreachableFiles(vmSpecOf(vm), null, null);
    if (unreachable) throw new TernError('conflict', unreachable);
    const id = randomUUID();
    const createdAt = now();
    const row: ReplicationTable = {
      id,
      vmId: vm.id,
      // Until the site answers: its replica's id and where it keeps it.
      replicaVmId: id,
      targetHostId: '',
      targetPool: body.pool ?? '',
      intervalS,
      points: body.points ?? 0,
      appConsistentEveryS: appS,
      bandwidth: body.bandwidth ?? 0,
      state: 'initial',
      resyncReason: null,
      lastError: null,
      lastCycleAt: null,
      lastTaskId: null,
      reverseOf: null,
      targetSiteId: site.id,
      sourceSiteId: null,
      sourceVmName: null,
      createdAt,
    };
    await this.#db.insertInto('replications').values(row).execute();
    try {
      const made = await this.#remote.create(site, {
        replication: id,
        vm: { id: vm.id, name: vm.name },
        spec: vmSpecOf(vm),
        intervalS,
        points: row.points,
        ...(body.pool ? { pool: body.pool } : {}),
      });
      await this.update(id, {
        replicaVmId: made.replicaVmId,
        targetHostId: made.host,
        targetPool: made.pool,
      });
    } catch (err) {
      await this.#db.deleteFrom('replications').where('id', '=', id).execute();
      throw err;
    }
    return this.show(id);
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
    const points = await this.points(row.id);
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

  /** The committed points the manager recorded, oldest first. */
  async points(replicationId: string): Promise<RecoveryPointTable[]> {
    return this.#db
      .selectFrom('recoveryPoints')
      .selectAll()
      .where('replicationId', '=', replicationId)
      .orderBy('id')
      .execute();
  }

  /** A point the replica's host committed in a cycle, as the primary's host reported it. */
  async recordPoint(replicationId: string, r: ReplicateVmResult, taskId: string): Promise<void> {
    await this.#insertPoint({
      replicationId,
      id: r.point,
      takenAt: r.takenAt,
      consistency: r.consistency,
      consistencyNote: r.consistencyNote,
      disks: JSON.stringify(r.disks),
      dirtyBytes: r.disks.reduce((n, d) => n + d.dirtyBytes, 0),
      sentBytes: r.disks.reduce((n, d) => n + d.sentBytes, 0),
      taskId,
      createdAt: now(),
    });
  }

  /** A point the replica's host holds that no cycle recorded (its manager died first). */
  async recordHeldPoint(replicationId: string, p: ReplicaPoint): Promise<void> {
    const disks: ReplicatedDisk[] = p.disks.map((d) => ({
      name: d.name,
      sizeBytes: d.sizeBytes,
      mode: 'incremental',
      fullReason: null,
      dirtyBytes: 0,
      readBytes: 0,
      sentBytes: 0,
    }));
    await this.#insertPoint({
      replicationId,
      id: p.id,
      takenAt: p.takenAt,
      consistency: p.consistency,
      consistencyNote: "recorded from the replica's host: the cycle that made it did not record it",
      disks: JSON.stringify(disks),
      dirtyBytes: 0,
      sentBytes: 0,
      taskId: null,
      createdAt: now(),
    });
  }

  async #insertPoint(row: RecoveryPointTable): Promise<void> {
    await this.#db
      .insertInto('recoveryPoints')
      .values(row)
      .onConflict((oc) => oc.columns(['replicationId', 'id']).doNothing())
      .execute();
  }

  async dropPoints(replicationId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#db
      .deleteFrom('recoveryPoints')
      .where('replicationId', '=', replicationId)
      .where('id', 'in', ids)
      .execute();
  }

  async pointsWire(ref: string): Promise<RecoveryPointInfo[]> {
    const row = await this.row(ref);
    const points = await this.points(row.id);
    const marks = new Map(
      markPoints(
        points.map((p) => ({
          id: p.id,
          takenAt: Date.parse(p.takenAt),
          appConsistent: p.consistency === 'application',
        })),
        row.points,
        pointPeriodMs(row.appConsistentEveryS),
      ).map((m) => [m.point.id, m.kept]),
    );
    return points.map((p) => ({
      id: p.id,
      takenAt: p.takenAt,
      consistency: p.consistency as RecoveryPointInfo['consistency'],
      consistencyNote: p.consistencyNote,
      disks: JSON.parse(p.disks) as ReplicatedDisk[],
      dirtyBytes: p.dirtyBytes,
      sentBytes: p.sentBytes,
      task: p.taskId,
      kept: marks.get(p.id) ?? null,
    }));
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
      this.points(row.id),
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

/** The target host's pool for the replica: the one asked for, else the primary's when the host has it. */
function targetPool(host: Host, wanted: string | undefined, asked: boolean): string {
  const pools = host.facts?.pools.map((p) => p.name) ?? [];
  if (wanted && pools.includes(wanted)) return wanted;
  const which = asked ? `no pool ${wanted}` : `no pool ${wanted ?? ''} like the VM's first disk`;
  throw new TernError(
    'invalid_request',
    `host ${host.name} has ${which}: name one of ${pools.join(', ') || '(none reported)'} with pool`,
  );
}

/** Refuses to act on a replica kept here for another site: that site drives it. */
export function drivenHere(row: ReplicationTable): void {
  if (row.sourceSiteId !== null)
    throw new TernError(
      'conflict',
      `this replica is kept here for ${row.sourceVmName ?? row.vmId} of another site: that site drives it`,
    );
}
