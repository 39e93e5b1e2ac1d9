/**
 * Refusals that come before any task, with the status that says what went wrong: no room is
 * 409 with placement's explanation, disk sizes are weighed against their pool's free space
 * under the storage overcommit, a disk does not shrink, image-pool versions of a pool that does
 * not exist are 404, and a task filter matches its object literally. On a simulated host whose
 * pools hold 1 TiB.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
before(async () => {
  c = await startSimCluster(1);
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'sv', template: 'sim' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
});
after(async () => {
  await c?.close();
});

const post = (path: string, body: unknown, method = 'POST') =>
  c.api.raw(method, path, { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
const taskCount = async () =>
  (await c.api.request<{ items: Task[] }>('GET', '/api/v1/tasks?limit=1000')).items.length;

test('a VM no host has room for is 409 with the explanation, and leaves nothing behind', async () => {
  const before = await taskCount();
  const r = await post('/api/v1/vms', { name: 'huge', diskGiB: 65536 });
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'no_capacity');
  assert.match(r.body.error!.message, /all 1 host rejected: 1 by capacity/);
  assert.match(
    JSON.stringify((r.body.error as { details?: unknown }).details),
    /needs 65536\.0 GiB in pool local, 1024\.0 GiB free × 1\.0/,
  );
  assert.equal((await c.api.raw('GET', '/api/v1/vms/huge')).status, 404);
  assert.equal(await taskCount(), before, 'no task started');
  // A linked clone counts at the size its guest sees: the template's disk grown to 2 TiB.
  const linked = await post('/api/v1/vms', { name: 'huge', template: 'sim', diskGiB: 2048 });
  assert.equal(linked.status, 409, JSON.stringify(linked.body));
});

test('disk growth and new disks are weighed against the pool under the storage overcommit', async () => {
  const before = await taskCount();
  const grow = await post('/api/v1/vms/sv/disks/0/resize', { sizeGiB: 2048 });
  assert.equal(grow.status, 409, JSON.stringify(grow.body));
  assert.equal(grow.body.error?.code, 'no_capacity');
  assert.match(
    grow.body.error!.message,
    /pool shared on host sim-001 cannot take 2047\.9 GiB more of disk: 1024\.0 GiB free/,
  );
  const add = await post('/api/v1/vms/sv/disks', { sizeGiB: 2048 });
  assert.equal(add.status, 409, JSON.stringify(add.body));
  assert.match(add.body.error!.message, /storageOvercommit 1/);
  assert.equal(await taskCount(), before, 'no task started');

  // An operator who accepts thin promises says how far.
  const settings = await post('/api/v1/cluster/settings', { storageOvercommit: 4 }, 'PATCH');
  assert.equal(settings.status, 200, JSON.stringify(settings.body));
  try {
    const t = await c.api.task('POST', '/api/v1/vms/sv/disks/0/resize', { sizeGiB: 2048 });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    const vm = await c.api.request<Vm>('GET', '/api/v1/vms/sv');
    assert.equal(vm.disks[0].sizeBytes, 2048 * 1024 ** 3);
  } finally {
    await post('/api/v1/cluster/settings', { storageOvercommit: 1 }, 'PATCH');
  }
});

test('a disk shrink, or a disk the VM lacks, is refused before a task', async () => {
  const before = await taskCount();
  const shrink = await post('/api/v1/vms/sv/disks/0/resize', { sizeGiB: 0.03125 });
  assert.equal(shrink.status, 409, JSON.stringify(shrink.body));
  assert.match(shrink.body.error!.message, /disks only grow/);
  const missing = await post('/api/v1/vms/sv/disks/5/resize', { sizeGiB: 1 });
  assert.equal(missing.status, 404, JSON.stringify(missing.body));
  assert.match(missing.body.error!.message, /has no disk 5/);
  const tiny = await post('/api/v1/vms', { name: 'tiny', diskGiB: 1e-9 });
  assert.equal(tiny.status, 400, 'a size below 1 MiB is refused, not rounded up');
  assert.match(tiny.body.error!.message, /diskGiB/);
  assert.equal(await taskCount(), before, 'no task started');
});

test('versions of an image pool that does not exist are 404, with no task', async () => {
  const before = await taskCount();
  for (const [method, path] of [
    ['POST', '/api/v1/image-pools/nosuch/versions'],
    ['POST', '/api/v1/image-pools/nosuch/versions/1/test'],
    ['POST', '/api/v1/image-pools/nosuch/versions/1/promote'],
    ['POST', '/api/v1/image-pools/nosuch/rollback'],
    ['DELETE', '/api/v1/image-pools/nosuch/versions/1'],
  ] as const) {
    const r = await c.api.raw(method, path);
    assert.equal(r.status, 404, `${method} ${path}: ${JSON.stringify(r.body)}`);
    assert.match(r.body.error!.message, /image pool nosuch does not exist/);
  }
  assert.equal(await taskCount(), before, 'no task started');
});

test('the task filter by object matches it literally: % and _ are not wildcards', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/sv');
  const mine = await c.api.request<{ items: Task[] }>('GET', `/api/v1/tasks?object=vm:${vm.id}`);
  assert.ok(mine.items.length > 0);
  assert.ok(mine.items.every((t) => t.objects.includes(`vm:${vm.id}`)));
  for (const pattern of ['vm:%', '%', 'vm:____%', vm.id.slice(0, 8)]) {
    const r = await c.api.request<{ items: Task[] }>(
      'GET',
      `/api/v1/tasks?object=${encodeURIComponent(pattern)}`,
    );
    assert.deepEqual(r.items, [], pattern);
  }
});

test("an image pool's golden image must fit; its VMs' write caches are thin", async () => {
  const sim = await c.manager.services.templates.get('sim');
  await c.manager.services.templates.insert(
    { ...sim, name: 'golden-2t', diskSizeBytes: 2048 * 1024 ** 3, createdAt: new Date().toISOString() },
    (await c.manager.services.hosts.get(c.sim.hosts[0].name)).id,
  );
  const before = await taskCount();
  const r = await post('/api/v1/image-pools', { name: 'desk', template: 'golden-2t', size: 2 });
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'no_capacity');
  assert.match(r.body.error!.message, /cannot take the golden image \(2048\.0 GiB\)/);
  assert.equal(await taskCount(), before, 'no task started');
});
