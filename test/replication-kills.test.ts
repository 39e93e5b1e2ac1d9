/**
 * Replication cycles killed with the manager (SIGKILL of a real manager process driving two
 * simulated hosts in this process) at a few instants: before the primary's host began, while
 * the stream runs, and once the replica's host committed the point. After the restart the
 * cycle's task has ended (failed or finished), the recovery points the manager records are
 * exactly those the replica's host committed (its points.json), and the next cycle completes.
 * And an agent whose replication is broken off: the cycle fails saying so, the next completes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { SimHost, SimHosts } from '../src/agent/sim/cluster.ts';
import { type Replication, replicationRoutes } from '../src/wire/api/replication.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type TestApi, tempDir } from './harness.ts';
import { KillableSimCluster, until } from './sim-harness.ts';

const dir = tempDir('tern-replication-kills');
let c: KillableSimCluster;
let api: TestApi;
let sim: SimHosts;
let primary: SimHost;
let target: SimHost;
let rel: Replication;

const ended = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';
/** The points the replica's host committed, as its points.json says. */
function hostPoints(): string[] {
  const file = path.join(target.pools.local, 'replicas', rel.id, 'points.json');
  if (!fs.existsSync(file)) return [];
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { points: { id: string }[] }).points.map((p) => p.id);
}

const recordedPoints = async () =>
  (await api.call(replicationRoutes.points, { params: { replication: 'rk' } })).items.map((p) => p.id);

async function cycle(): Promise<Task> {
  return (await api.call(replicationRoutes.cycle, { params: { replication: 'rk' } })).task;
}

before(async () => {
  c = await KillableSimCluster.start(dir, 2, 50);
  api = c.api;
  sim = c.sim!;
  const t = await api.task('POST', '/api/v1/vms', { name: 'rk', diskGiB: 64 / 1024, start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await api.request<Vm>('GET', '/api/v1/vms/rk');
  primary = sim.hosts.find((h) => h.name === vm.host)!;
  target = sim.hosts.find((h) => h.name !== vm.host)!;
  // 5 min: the manager's own scheduler starts the first cycle; the others here are asked for.
  rel = await api.call(replicationRoutes.create, {
    body: { vm: 'rk', host: target.name, pool: 'local', every: '5m', points: 3 },
  });
  const first = await until('the first point', 60_000, async () => {
    const r = await api.call(replicationRoutes.show, { params: { replication: 'rk' } });
    return r.pointCount > 0 && r.lastTask ? r : undefined;
  });
  assert.equal((await api.waitTask(first.lastTask!, ended, 60_000, 'ended')).state, 'succeeded');
});

after(async () => {
  await c?.close();
});

/** Kills the manager once `instant` says so during a cycle, restarts it, and checks the outcome. */
async function killDuring(what: string, instant: (task: Task) => Promise<boolean>): Promise<Task> {
  const task = await cycle();
  await until(what, 30_000, async () => ((await instant(task)) ? true : undefined), 20);
  await c.manager.kill();
  primary.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 120_000, 'ended');
  assert.notEqual(done.state, 'cancelled');
  if (done.state === 'failed') assert.match(done.error?.message ?? '', /manager stopped/);
  assert.deepEqual(await recordedPoints(), hostPoints(), 'the recorded points are the committed ones');
  const next = await api.settle(await cycle());
  assert.equal(next.state, 'succeeded', JSON.stringify(next.error));
  assert.deepEqual(await recordedPoints(), hostPoints());
  return done;
}

test('manager SIGKILLed before the primary host began: the cycle fails, points agree, the next completes', async () => {
  primary.driver.faults.hangNext('replicateVm', 1);
  const done = await killDuring('the primary host hanging', async () => primary.driver.faults.hanging === 1);
  assert.equal(done.state, 'failed');
});

test('manager SIGKILLed while the stream runs: the cycle fails, points agree, the next completes', async () => {
  const before = hostPoints();
  await killDuring('the stream under way', async (t) => {
    const now = await api.request<Task>('GET', `/api/v1/tasks/${t.id}`);
    return now.step.startsWith('replicating') || hostPoints().length !== before.length || ended(now);
  });
});

test('manager SIGKILLed once the replica host committed the point: it is recorded after the restart', async () => {
  const before = hostPoints();
  let committed: string | undefined;
  const done = await killDuring('the point committed', async () => {
    committed = hostPoints().at(-1);
    return committed !== before.at(-1);
  });
  assert.ok(committed && (await recordedPoints()).includes(committed), `${committed} is recorded`);
  // Killed between the host's commit and the manager's record, the cleanup records it.
  const shown = await api.request<Task>('GET', `/api/v1/tasks/${done.id}`);
  const lines = shown.log?.map((l) => l.line) ?? [];
  if (lines.some((l) => l.startsWith('recorded recovery point')))
    assert.ok(lines.includes(`recorded recovery point ${committed}, which the replica's host committed`));
});

test('the primary host failing mid-cycle: the cycle fails saying so, the next completes', async () => {
  primary.driver.faults.failNext('replicateVm', 1);
  const failed = await api.settle(await cycle());
  assert.equal(failed.state, 'failed');
  assert.ok(failed.error?.message, 'it says why');
  const r = await api.call(replicationRoutes.show, { params: { replication: 'rk' } });
  assert.equal(r.lastError, failed.error?.message);
  const next = await api.settle(await cycle());
  assert.equal(next.state, 'succeeded', JSON.stringify(next.error));
  assert.deepEqual(await recordedPoints(), hostPoints());
});
