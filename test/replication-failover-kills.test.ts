/**
 * A planned failover whose manager is SIGKILLed at three instants — while the primary is asked
 * to shut down, while its last cycle is under way, while the replica is being started — ends,
 * after the manager's restart, finished: the replica runs, the primary is stopped and kept from
 * starting, the relationship is failed-over. Throughout (a sampler over the simulated hosts'
 * own lists), no VM runs on two hosts at once. A primary that will not shut down fails the
 * failover, rolled back; a test failover killed while its copy starts is undone whole.
 *
 * A real manager process (so the kill is a real one) drives two simulated hosts in this process.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { SimHost, SimHosts } from '../src/agent/sim/cluster.ts';
import type { SimOperation } from '../src/agent/sim/faults.ts';
import { type Replication, replicationRoutes } from '../src/wire/api/replication.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type TestApi, tempDir } from './harness.ts';
import { KillableSimCluster, until } from './sim-harness.ts';

const dir = tempDir('tern-failover-kills');
let c: KillableSimCluster;
let api: TestApi;
let sim: SimHosts;

const ended = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';
const live = (state: string) => state === 'running' || state === 'paused';

before(async () => {
  c = await KillableSimCluster.start(dir, 2, 20);
  api = c.api;
  sim = c.sim!;
});

after(async () => {
  await c?.close();
});

/** Samples every host's driver until stopped: each VM seen live on two hosts at once. */
function sampleCopies() {
  const doubles: string[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const seen = new Map<string, string[]>();
      for (const h of sim.hosts)
        for (const vm of h.driver.list())
          if (live(vm.state)) seen.set(vm.id, [...(seen.get(vm.id) ?? []), h.name]);
      for (const [id, on] of seen) if (on.length > 1 && doubles.length < 20) doubles.push(`${id} on ${on}`);
      await new Promise((r) => setTimeout(r, 20).unref());
    }
  })();
  return async () => {
    running = false;
    await done;
    return doubles;
  };
}

const runsOn = (vmId: string) =>
  sim.hosts.filter((h) => h.driver.list().some((v) => v.id === vmId && live(v.state))).map((h) => h.name);

/** A running VM replicated to the other host, with its first point. */
async function replicated(name: string): Promise<{ vm: Vm; primary: SimHost; target: SimHost }> {
  const t = await api.task('POST', '/api/v1/vms', { name, diskGiB: 64 / 1024, start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await api.request<Vm>('GET', `/api/v1/vms/${name}`);
  const primary = sim.host(vm.host!);
  const target = sim.hosts.find((h) => h !== primary)!;
  await api.call(replicationRoutes.create, {
    body: { vm: name, host: target.name, pool: 'local', every: '24h' },
  });
  const { task } = await api.call(replicationRoutes.cycle, { params: { replication: name } });
  assert.equal((await api.settle(task)).state, 'succeeded');
  return { vm, primary, target };
}

async function killedAt(name: string, where: 'primary' | 'target', op: SimOperation): Promise<void> {
  const { vm, primary, target } = await replicated(name);
  const host = where === 'primary' ? primary : target;
  const stopSampling = sampleCopies();
  host.driver.faults.hangNext(op);
  const { task } = await api.request<{ task: Task }>('POST', `/api/v1/replications/${name}/failover`, {
    planned: true,
  });
  await until(
    `the failover at ${op} on ${host.name}`,
    30_000,
    async () => host.driver.faults.hanging > 0 || undefined,
  );
  await c.manager.kill();
  host.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 120_000, 'ended');
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const rel = await api.call(replicationRoutes.show, { params: { replication: name } });
  assert.equal(rel.state, 'failed-over');
  assert.deepEqual(runsOn(vm.id), [], 'the primary is stopped');
  assert.deepEqual(runsOn((rel as Replication).replicaVmId), [target.name], 'the replica runs on its host');
  assert.equal((await api.request<Vm>('GET', `/api/v1/vms/${name}`)).state, 'stopped');
  assert.equal((await api.request<Vm>('GET', `/api/v1/vms/${name}-replica`)).state, 'running');
  const start = await api.request('POST', `/api/v1/vms/${name}/start`, {}).then(
    () => null,
    (e: Error) => e.message,
  );
  assert.match(start ?? 'started', /only a failover starts it/);
  assert.deepEqual(await stopSampling(), [], 'no VM ran on two hosts at once');
}

test('manager SIGKILLed while the primary is asked to shut down: the failover finishes after the restart', async () => {
  await killedAt('k-shutdown', 'primary', 'act');
});

test('manager SIGKILLed during the last cycle: the failover finishes after the restart', async () => {
  await killedAt('k-cycle', 'primary', 'replicateVm');
});

test('manager SIGKILLed while the replica starts: the failover finishes, the replica runs once', async () => {
  await killedAt('k-start', 'target', 'run');
});

test('a planned failover whose primary will not shut down fails and is rolled back; with --force it powers it off', async () => {
  const { vm, primary, target } = await replicated('k-stuck');
  primary.driver.setGuestPowerOffFails(vm.id, 'the guest ignores its power button');
  const failed = await api.task('POST', '/api/v1/replications/k-stuck/failover', {
    planned: true,
    shutdownTimeoutSeconds: 1,
  });
  assert.equal(failed.state, 'failed');
  assert.match(failed.error?.message ?? '', /did not shut down within 1 s/);
  const rel = await api.call(replicationRoutes.show, { params: { replication: 'k-stuck' } });
  assert.equal(rel.state, 'replicating');
  assert.deepEqual(runsOn(vm.id), [primary.name], 'the primary runs on');
  assert.deepEqual(runsOn(rel.replicaVmId), []);
  const replica = await api.request<Vm>('GET', '/api/v1/vms/k-stuck-replica');
  assert.match(
    replica.disks[0]!.volume.path,
    new RegExp(`^replicas/${rel.id}/disk0/`),
    'the replica as it was',
  );
  const forced = await api.task('POST', '/api/v1/replications/k-stuck/failover', {
    planned: true,
    force: true,
    shutdownTimeoutSeconds: 1,
  });
  assert.equal(forced.state, 'succeeded', JSON.stringify(forced.error));
  assert.ok(forced.log?.some((l) => l.line.includes('powered off (forced)')));
  assert.deepEqual(runsOn(vm.id), []);
  assert.deepEqual(runsOn(rel.replicaVmId), [target.name]);
});

test('manager SIGKILLed while a test failover starts its copy: after the restart the copy, its overlays and its network are gone', async () => {
  const { vm, target } = await replicated('k-test');
  const rel = await api.call(replicationRoutes.show, { params: { replication: 'k-test' } });
  target.driver.faults.hangNext('run');
  const { task } = await api.request<{ task: Task }>('POST', '/api/v1/replications/k-test/test-failover', {});
  await until('the copy starting', 30_000, async () => target.driver.faults.hanging > 0 || undefined);
  const copy = await api.request<Vm>('GET', '/api/v1/vms/k-test-test');
  await c.manager.kill();
  target.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 120_000, 'ended');
  assert.equal(done.state, 'failed');
  const gone = (p: Promise<unknown>) =>
    p.then(
      () => 'there',
      (e: Error & { status: number }) => e.status,
    );
  assert.equal(await gone(api.request('GET', '/api/v1/vms/k-test-test')), 404);
  assert.equal(await gone(api.request('GET', '/api/v1/networks/k-test-test')), 404);
  assert.deepEqual(runsOn(copy.id), []);
  const lent = path.join(target.pools.local!, copy.disks[0]!.volume.path);
  assert.equal(fs.existsSync(lent), false, 'its overlay is gone');
  assert.deepEqual(runsOn(vm.id), [vm.host], 'the primary runs on');
  // The point is released: a second test runs and stops.
  const again = await api.task('POST', '/api/v1/replications/k-test/test-failover', {});
  assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
  assert.equal((await api.task('POST', '/api/v1/replications/k-test/test-stop')).state, 'succeeded');
  assert.equal(rel.state, 'replicating');
});
