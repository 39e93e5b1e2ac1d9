/**
 * A relationship made: checked (a replica, a VM being made or deleted, one without a host or a
 * writable disk, one replicated already are refused), then its row and its replica, on a host
 * of this cluster or at a trusted site.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { CreateReplicationBody } from '../../wire/api/replication.ts';
import type { Host } from '../../wire/host.ts';
import { type Db, now } from '../db/database.ts';
import type { ReplicationTable, VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { SiteStore } from '../sites/store.ts';
import type { VmStore } from '../vms/store.ts';
import { appConsistentPeriodOf, intervalOf } from './intervals.ts';
import type { RemoteReplicas } from './remote-replicas.ts';
import { replicaName, replicaSpec, replicatedDisks, unreachableFiles } from './replica-spec.ts';

export interface CreateDeps {
  db: Db;
  store: VmStore;
  hosts: HostRegistry;
  sites: SiteStore | null;
  remote: RemoteReplicas | null;
}

/** Makes a relationship and its replica; the row as made. */
export async function createRelationship(
  d: CreateDeps,
  body: CreateReplicationBody,
): Promise<ReplicationTable> {
  const intervalS = intervalOf(body.every);
  const appS = appConsistentPeriodOf(body.appConsistentEvery ?? '0', intervalS);
  if ((body.host === undefined) === (body.site === undefined))
    throw new TernError('invalid_request', 'name where the replica goes: a host of this cluster or a site');
  const vm = await d.store.row(body.vm);
  if (vm.replicaOf)
    throw new TernError('conflict', `VM ${vm.name} is a replica: replicate its primary, or fail over first`);
  if (vm.state === 'creating' || vm.state === 'deleting')
    throw new TernError('conflict', `VM ${vm.name} is ${vm.state}`);
  if (!vm.hostId) throw new TernError('conflict', `VM ${vm.name} has no host`);
  const spec = vmSpecOf(vm);
  if (replicatedDisks(spec).length === 0)
    throw new TernError('conflict', `VM ${vm.name} has no writable disk to replicate`);
  const existing = await d.db
    .selectFrom('replications')
    .select('id')
    .where('vmId', '=', vm.id)
    .executeTakeFirst();
  if (existing)
    throw new TernError('conflict', `VM ${vm.name} is replicated already (replication ${existing.id})`);
  if (body.site !== undefined) return createToSite(d, body, vm, intervalS, appS);
  const host = await d.hosts.get(body.host!);
  if (host.id === vm.hostId)
    throw new TernError(
      'invalid_request',
      `VM ${vm.name} runs on ${host.name}: replicate it to another host`,
    );
  if (host.state !== 'online')
    throw new TernError('conflict', `host ${host.name} is ${host.state}: it cannot take a replica now`);
  const pool = targetPool(
    host,
    body.pool ?? spec.disks.find((x) => !x.readonly)?.volume.pool,
    body.pool !== undefined,
  );
  const source = await d.hosts.get(vm.hostId);
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
  const row = newRow(body, vm, intervalS, appS, createdAt, {
    id,
    replicaVmId: replicaId,
    targetHostId: host.id,
    targetPool: pool,
    targetSiteId: null,
  });
  // The replica first: a name taken refuses the whole, and no relationship is left without one.
  await d.store.insert(replica, []);
  try {
    await d.db.insertInto('replications').values(row).execute();
  } catch (err) {
    await d.store.remove(replicaId);
    throw err;
  }
  return row;
}

/**
 * A relationship whose replica another site keeps: the row first (so a crash leaves a row
 * whose cycles say the site has no replica, never a replica nobody here knows), then the
 * site makes the replica on a host and pool of its choosing; if it refuses, the row goes.
 */
async function createToSite(
  d: CreateDeps,
  body: CreateReplicationBody,
  vm: VmTable,
  intervalS: number,
  appS: number,
): Promise<ReplicationTable> {
  if (!d.sites || !d.remote) throw new TernError('unavailable', 'this manager keeps no sites');
  const site = await d.sites.row(body.site!);
  const unreachable = unreachableFiles(vmSpecOf(vm), null, null);
  if (unreachable) throw new TernError('conflict', unreachable);
  const id = randomUUID();
  const row = newRow(body, vm, intervalS, appS, now(), {
    id,
    // Until the site answers: its replica's id and where it keeps it.
    replicaVmId: id,
    targetHostId: '',
    targetPool: body.pool ?? '',
    targetSiteId: site.id,
  });
  await d.db.insertInto('replications').values(row).execute();
  try {
    const made = await d.remote.create(site, {
      replication: id,
      vm: { id: vm.id, name: vm.name },
      spec: vmSpecOf(vm),
      intervalS,
      points: row.points,
      ...(body.pool ? { pool: body.pool } : {}),
    });
    const where = { replicaVmId: made.replicaVmId, targetHostId: made.host, targetPool: made.pool };
    await d.db.updateTable('replications').set(where).where('id', '=', id).execute();
    return { ...row, ...where };
  } catch (err) {
    await d.db.deleteFrom('replications').where('id', '=', id).execute();
    throw err;
  }
}

/** A new relationship's row: where its replica is, the rest as asked, nothing run yet. */
function newRow(
  body: CreateReplicationBody,
  vm: VmTable,
  intervalS: number,
  appS: number,
  createdAt: string,
  where: Pick<ReplicationTable, 'id' | 'replicaVmId' | 'targetHostId' | 'targetPool' | 'targetSiteId'>,
): ReplicationTable {
  return {
    ...where,
    vmId: vm.id,
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
    sourceSiteId: null,
    sourceVmName: null,
    createdAt,
  };
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
