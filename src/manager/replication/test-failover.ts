/**
 * Test failover: a copy of a recovery point runs on the replica's host, named `<vm>-test`, on
 * an isolated network only (the one named, or `<vm>-test` made for it and removed after), not
 * HA-protected, while replication goes on. Its disks are overlays the replica's host lends from
 * the point, which stays pinned (no prune drops it) while they exist; the replica's points are
 * never written. Stopping the test deletes the VM and its overlays, which releases the point.
 *
 * The VM is recorded `creating` with its `replica_tests` row before its task runs, as a
 * created VM is: a test failover that fails, or whose manager dies, is undone whole (the task
 * fails and its cleanup is the test stop's own work), so it ends running or gone.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Task } from '../../wire/task.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import type { ReplicaTestTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { planNics } from '../networks/nics.ts';
import { isUniqueViolation } from '../networks/store.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { startVm } from '../vms/power.ts';
import { newVmRow } from '../vms/store.ts';
import { chosenPoint, type ReplicaFailoverDeps } from './failover-deps.ts';
import { planLentVm, testSubnet } from './lent-vm.ts';

export interface TestFailoverParams {
  replicationId: string;
  vmId: string;
  point: string;
  hostId: string;
  pool: string;
  disks: { name: string; target: VolumeRef }[];
  extra: { volume: VolumeRef; format: 'qcow2' | 'raw'; content?: 'uefi-vars' }[];
}

export interface TestStopParams {
  vmId: string;
  /** The network the test made for itself, removed once its VM is gone. */
  networkId: string | null;
}

export interface TestFailoverKinds {
  testFailover: TaskKind<TestFailoverParams>;
  testStop: TaskKind<TestStopParams>;
}

/** Points a test copy's disks stand on: the replica's host refuses to drop them, and so does prune. */
export async function testedPoints(
  d: Pick<ReplicaFailoverDeps, 'db'>,
  replicationId: string,
): Promise<string[]> {
  const rows = await d.db
    .selectFrom('replicaTests')
    .select('pointId')
    .where('replicationId', '=', replicationId)
    .execute();
  return rows.map((r) => r.pointId);
}

/** The lock a test failover and its stop hold: cycles of the relationship go on meanwhile. */
const testLock = (replicationId: string) => `replication-test:${replicationId}`;

export async function submitTestFailover(
  d: ReplicaFailoverDeps,
  kinds: TestFailoverKinds,
  ref: string,
  body: { point?: string; network?: string },
  ownerId: string | null,
): Promise<Task> {
  const rel = await d.replications.row(ref);
  if (rel.targetSiteId || rel.sourceSiteId)
    throw new TernError(
      'conflict',
      'a replication between sites has no test failover yet: only one within this cluster',
    );
  const primary = await d.store.row(rel.vmId);
  if (rel.state === 'failed-over' || rel.state === 'removed')
    throw new TernError('conflict', `the replication of ${primary.name} is ${rel.state}: nothing to test`);
  const running = await d.db
    .selectFrom('replicaTests')
    .innerJoin('vms', 'vms.id', 'replicaTests.vmId')
    .select('vms.name')
    .where('replicationId', '=', rel.id)
    .executeTakeFirst();
  if (running)
    throw new TernError(
      'conflict',
      `a test failover of ${primary.name} runs already (VM ${running.name}): stop it first (tern replication test-stop ${primary.name})`,
    );
  const point = await chosenPoint(d, rel, body.point, primary.name);
  const name = `${primary.name.slice(0, 58)}-test`;
  const network = await testNetwork(d, name, body.network);
  const replicated = vmSpecOf(await d.store.row(rel.replicaVmId));
  const id = randomUUID();
  const nics = await planNics(
    d,
    replicated.nics.map(() => ({ mode: 'network' as const, network: network.id })),
  );
  try {
    const plan = planLentVm(replicated, JSON.parse(point.disks) as { name: string; sizeBytes: number }[], {
      id,
      name,
      pool: rel.targetPool,
      point: point.id,
      nics: nics.map((n) => n.spec),
    });
    const row = newVmRow(
      { spec: plan.spec, volumes: [], diskSizes: plan.diskSizes, clone: null, seed: { metaData: '' } },
      rel.targetHostId,
      null,
      randomUUID(),
    );
    await d.store.insert(
      { ...row, ownerId },
      nics.map((n) => n.row),
    );
    const test: ReplicaTestTable = {
      vmId: id,
      replicationId: rel.id,
      pointId: point.id,
      networkId: network.made ? network.id : null,
      createdAt: now(),
    };
    try {
      await d.db.insertInto('replicaTests').values(test).execute();
    } catch (err) {
      await d.store.remove(id);
      if (!isUniqueViolation(err)) throw err;
      throw new TernError('conflict', `a test failover of ${primary.name} started meanwhile`);
    }
    const params: TestFailoverParams = {
      replicationId: rel.id,
      vmId: id,
      point: point.id,
      hostId: rel.targetHostId,
      pool: rel.targetPool,
      disks: plan.disks,
      extra: plan.extra,
    };
    try {
      return await d.tasks.submit(kinds.testFailover, params, [`vm:${id}`, testLock(rel.id)]);
    } catch (err) {
      await d.store.remove(id);
      throw err;
    }
  } catch (err) {
    if (network.made) await removeNetwork(d, network.id);
    throw err;
  } finally {
    d.networks.release(nics.map((n) => n.row));
  }
}

/** Stops the test failover of a relationship (by its VM or id): its VM and overlays go. */
export async function submitTestStop(
  d: ReplicaFailoverDeps,
  kinds: TestFailoverKinds,
  ref: string,
): Promise<Task> {
  const rel = await d.replications.row(ref);
  const test = await d.db
    .selectFrom('replicaTests')
    .selectAll()
    .where('replicationId', '=', rel.id)
    .executeTakeFirst();
  if (!test) throw new TernError('not_found', `no test failover of this replication runs`);
  return d.tasks.submit(kinds.testStop, { vmId: test.vmId, networkId: test.networkId }, [
    `vm:${test.vmId}`,
    testLock(rel.id),
  ]);
}

/** The network named (it must be isolated), or a new isolated one named after the test VM. */
async function testNetwork(
  d: ReplicaFailoverDeps,
  name: string,
  asked: string | undefined,
): Promise<{ id: string; made: boolean }> {
  if (asked) {
    const row = await d.networks.row(asked);
    if (row.type !== 'isolated')
      throw new TernError(
        'invalid_request',
        `network ${row.name} is ${row.type}: a test failover runs on an isolated network only, so the copy never meets the primary's peers`,
        { field: 'network' },
      );
    return { id: row.id, made: false };
  }
  const subnets = (await d.networks.rows()).map((n) => n.subnet);
  const made = await d.networks.create({ name, type: 'isolated', subnet: testSubnet(subnets) });
  d.networkSync.changed();
  return { id: made.id, made: true };
}

async function removeNetwork(d: ReplicaFailoverDeps, id: string): Promise<void> {
  const row = await d.networks.find(id);
  if (!row) return;
  await d.networks.remove(id);
  d.networkSync.changed();
}

export function testFailoverKinds(d: ReplicaFailoverDeps): TestFailoverKinds {
  const testStop: TaskKind<TestStopParams> = {
    kind: 'replication.test-stop',
    onInterrupt: 'resume',
    async run(ctx, p) {
      await discard(d, ctx, p);
      return { deleted: p.vmId };
    },
  };
  const testFailover: TaskKind<TestFailoverParams> = {
    kind: 'replication.test-failover',
    // Undone whole rather than resumed: a test is cheap to ask for again.
    onInterrupt: 'fail',
    async run(ctx, p) {
      const agent = d.hosts.client(p.hostId);
      await ctx.step(`lending recovery point ${p.point}`, 10);
      await d.replicaHosts.lendPoint(p.hostId, p.replicationId, p.point, { pool: p.pool, disks: p.disks });
      for (const v of p.extra) await agent.createVolume(v);
      await d.store.setState(p.vmId, { state: 'stopped', reason: null });
      await ctx.step('starting the copy on its isolated network', 50);
      const vm = await startVm(d, ctx, p.vmId);
      await ctx.log(`${vm.name} runs recovery point ${p.point}; replication goes on`);
      return { vm: vm.name, point: p.point };
    },
    async cleanup(ctx, p) {
      const test = await d.db
        .selectFrom('replicaTests')
        .select('networkId')
        .where('vmId', '=', p.vmId)
        .executeTakeFirst();
      await discard(d, ctx, { vmId: p.vmId, networkId: test?.networkId ?? null });
      await ctx.log('removed the test copy');
    },
  };
  return { testFailover, testStop };
}

/**
 * Removes a test copy: its QEMU, its overlays (the replica's host then releases the point),
 * its row, its own network. Each step takes what is already gone as done, so it resumes.
 */
async function discard(d: ReplicaFailoverDeps, ctx: TaskContext, p: TestStopParams): Promise<void> {
  const row = await d.store.row(p.vmId).catch(() => null);
  if (row) {
    const spec = vmSpecOf(row);
    const agent = d.hosts.client(row.hostId!);
    const gone = (err: TernError) => {
      if (err.code !== 'not_found') throw err;
    };
    await ctx.step('stopping the copy', 10);
    if (row.state !== 'stopped' && row.state !== 'creating') await agent.act(p.vmId, 'kill').catch(gone);
    await agent.forgetVm(p.vmId).catch(gone);
    await ctx.step("removing the copy's overlays", 40);
    for (const v of [...spec.disks.map((x) => x.volume), ...(spec.efiVars ? [spec.efiVars] : [])])
      await agent.deleteVolume(v).catch(gone);
    await d.store.remove(p.vmId);
  }
  if (p.networkId) {
    await ctx.step('removing its isolated network', 80);
    await removeNetwork(d, p.networkId);
  }
}
