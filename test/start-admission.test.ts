/**
 * CPU and memory are taken by a start, not by a VM that exists: a small host holds many stopped
 * VMs, and of many starts at once it admits what it can run and refuses the rest with 409.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ClusterSettings } from '../src/wire/cluster.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

const cores = 2;
const count = 20;
let c: SimCluster;
before(async () => {
  // Memory for all of them: CPU is what runs out.
  c = await startSimCluster(1, { driver: { cores, memoryMiB: 64 * 1024 } });
});
after(async () => {
  await c?.close();
});

const names = Array.from({ length: count }, (_, i) => `s-${i + 1}`);

test('twenty stopped 1-vCPU VMs are created at once on a 2-core host', async () => {
  const tasks = await Promise.all(
    names.map((name) => c.api.task('POST', '/api/v1/vms', { name, template: 'sim', vcpus: 1 })),
  );
  for (const t of tasks) assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const { items } = await c.api.request<{ items: Vm[] }>('GET', '/api/v1/vms?name=s-');
  assert.equal(items.length, count);
  assert.ok(items.every((v) => v.state === 'stopped'));
});

test('starts at once beyond what the host holds: the excess is refused with 409, the host never holds more', async () => {
  const settings = await c.api.request<ClusterSettings>('GET', '/api/v1/cluster/settings');
  const capacity = cores * settings.cpuOvercommit;
  assert.ok(capacity < count, `the host holds ${capacity} vCPUs`);
  const answers = await Promise.all(
    names.map((name) =>
      c.api.raw('POST', `/api/v1/vms/${name}/start`, {
        body: '{}',
        headers: { 'content-type': 'application/json' },
      }),
    ),
  );
  const accepted = answers.filter((a) => a.status === 202);
  const refused = answers.filter((a) => a.status !== 202);
  assert.equal(accepted.length, capacity, JSON.stringify(refused[0]?.body));
  for (const r of refused) {
    assert.equal(r.status, 409);
    assert.equal(r.body.error?.code, 'conflict');
    assert.match(r.body.error!.message, /^VM s-\d+ cannot start: .*capacity/);
  }
  const done = await Promise.all(accepted.map((a) => c.api.settle((a.body as { task: Task }).task)));
  for (const t of done) assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const running = (await c.api.request<{ items: Vm[] }>('GET', '/api/v1/vms?state=running')).items;
  assert.equal(running.length, capacity);
  assert.equal(
    c.sim.hosts[0].driver.list().filter((v) => v.state === 'running').length,
    capacity,
    'the host runs exactly what it holds',
  );
  // A stopped one makes room for another.
  const stop = await c.api.task('POST', `/api/v1/vms/${running[0].name}/stop`);
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
  const next = names.find((n) => !running.some((v) => v.name === n))!;
  const start = await c.api.task('POST', `/api/v1/vms/${next}/start`);
  assert.equal(start.state, 'succeeded', JSON.stringify(start.error));
});
