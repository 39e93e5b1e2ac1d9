/**
 * Three real hosts on one machine form a cluster over mutual TLS, with one shared directory as
 * shared storage. A running tiny guest live-migrates between them through the manager with and
 * without shared storage, quick-migrates, moves a disk between pools, and leaves a host that
 * goes into maintenance. Throughout, the inventory names exactly one host for the VM, and the
 * guest proves it never rebooted (a file in its tmpfs survives) and still answers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Host } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, shellOn, startCluster } from './harness.ts';

let c: Cluster;
const answering = (vm: Vm) => vm.state === 'running' && vm.guest.agent === 'responding';

before(async () => {
  c = await startCluster('cluster', { hosts: ['a', 'b', 'c'], shared: true });
});
after(async () => {
  await c?.stop();
});

const hostNamed = (name: string) => c.hosts.find((h) => h.name === name)!;
const shell = (vm: Vm, command: string, expect: RegExp) =>
  shellOn(hostNamed(vm.host!), vm.id, command, expect);
const vm = (name: string) => c.api.request<Vm>('GET', `/api/v1/vms/${name}`);

/** Puts a file in the guest's tmpfs: it survives only if the guest keeps running. */
async function mark(v: Vm): Promise<void> {
  await shell(
    v,
    `echo kept-${v.name} > /tmp/mark; cat /tmp/mark | tr a-z A-Z`,
    new RegExp(`KEPT-${v.name.toUpperCase()}`),
  );
}
async function stillMarked(v: Vm): Promise<void> {
  await shell(v, 'cat /tmp/mark | tr a-z A-Z', new RegExp(`KEPT-${v.name.toUpperCase()}`));
}

async function boot(name: string, extra: Record<string, unknown> = {}): Promise<Vm> {
  const t = await c.api.task('POST', '/api/v1/vms', { name, template: 'tiny', start: true, ...extra });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  return c.api.waitVm(name, answering, 120_000, 'answering');
}

/**
 * Migrates while sampling the inventory: every sample names one host, first the source and
 * then the target, never anything else.
 */
async function migrate(name: string, body: Record<string, unknown>) {
  const before = await vm(name);
  const seen: string[] = [];
  let sampling = true;
  const sampler = (async () => {
    const deadline = Date.now() + 600_000;
    while (sampling && Date.now() < deadline) {
      const v = await vm(name);
      seen.push(v.host ?? 'none');
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const t = await c.api.task('POST', `/api/v1/vms/${name}/migrate`, body);
  sampling = false;
  await sampler;
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const after = await vm(name);
  assert.notEqual(after.host, before.host);
  const switches = seen.filter((h, i) => i > 0 && h !== seen[i - 1]).length;
  assert.ok(
    seen.every((h) => h === before.host || h === after.host),
    `hosts seen: ${[...new Set(seen)]}`,
  );
  assert.ok(switches <= 1, `the inventory switched hosts ${switches} times`);
  const result = t.result as { from: string; to: string; downtimeMs: number; storage: string };
  assert.equal(result.from, before.host);
  assert.equal(result.to, after.host);
  assert.ok(result.downtimeMs >= 0 && result.downtimeMs < 10_000, `downtime ${result.downtimeMs} ms`);
  // One QEMU for the VM once the source let go.
  assert.equal(qemuPids(after.id).length, 1);
  return { before, after, result };
}

test('the three hosts are online and share one CPU baseline', async () => {
  const { items } = await c.api.request<{ items: Host[] }>('GET', '/api/v1/hosts');
  assert.deepEqual(
    items.map((h) => [h.name, h.state]),
    [
      ['a', 'online'],
      ['b', 'online'],
      ['c', 'online'],
    ],
  );
  for (const h of items) assert.ok(h.facts!.pools.some((p) => p.name === 'shared' && p.shared));
  const cluster = await c.api.request<{ cpuBaseline: { model: string } }>('GET', '/api/v1/cluster');
  assert.ok(cluster.cpuBaseline.model.length > 0);
});

test('a running guest live-migrates on shared storage, placement picking the target', async () => {
  const web = await boot('web');
  const cluster = await c.api.request<{ cpuBaseline: { model: string } }>('GET', '/api/v1/cluster');
  assert.equal(web.cpuModel, cluster.cpuBaseline.model);
  await mark(web);
  const { after, result } = await migrate('web', {});
  assert.equal(result.storage, 'shared');
  await stillMarked(after);
  const answered = await c.api.waitVm(
    'web',
    (v) => answering(v) && Date.parse(v.guest.lastHeartbeat ?? '0') > Date.parse(after.updatedAt) - 1000,
    60_000,
    'answering on the new host',
  );
  assert.equal(answered.host, after.host);
});

test('without shared storage the disks are mirrored to the target pool', async () => {
  // A full clone in host-local storage; the boot files stay on shared storage.
  const db = await boot('db', { pool: 'local', full: true });
  await mark(db);
  const to = ['a', 'b', 'c'].find((h) => h !== db.host)!;
  const { after, result } = await migrate('db', { to });
  assert.equal(result.storage, 'mirror');
  assert.equal(after.host, to);
  await stillMarked(after);
  const disk = path.join(hostNamed(to).pool, after.disks[0].volume.path);
  execFileSync('qemu-img', ['check', '-U', disk]);
  // The source's copy is gone.
  const old = path.join(hostNamed(db.host!).pool, db.disks[0].volume.path);
  assert.throws(() => execFileSync('qemu-img', ['info', old], { stdio: 'ignore' }));
});

test('a migration that cannot finish in time is cancelled, the VM running on at the source', async () => {
  const web = await vm('web');
  const t = await c.api.task('POST', '/api/v1/vms/web/migrate', { bandwidthMiBps: 1, timeoutS: 2 });
  assert.equal(t.state, 'failed');
  assert.equal(t.error!.code, 'timeout', JSON.stringify(t.error));
  const now = await c.api.waitVm('web', (v) => v.state === 'running', 30_000, 'running');
  assert.equal(now.host, web.host);
  assert.equal(qemuPids(web.id).length, 1);
  await stillMarked(now);
});

test('a manager killed during a migration: after its restart the VM runs at the source only', async () => {
  const web = await vm('web');
  // Slow enough to be caught in the middle: about 40 MiB at 4 MiB/s.
  const { task } = await c.api.request<{ task: Task }>('POST', '/api/v1/vms/web/migrate', {
    bandwidthMiBps: 4,
    timeoutS: 300,
  });
  await c.api.waitTask(task.id, (t) => /sending memory|^memory:/.test(t.step), 60_000, 'sending memory');
  await c.manager.kill();
  await c.startManager();
  const settled = await c.api.settle(task);
  assert.equal(settled.state, 'failed');
  const now = await c.api.waitVm('web', (v) => v.state === 'running', 60_000, 'running');
  assert.equal(now.host, web.host);
  assert.equal(qemuPids(web.id).length, 1, 'the target no longer holds a waiting copy');
  await stillMarked(now);
});

test('quick migration suspends to shared storage and resumes elsewhere', async () => {
  const { after } = await migrate('web', { mode: 'quick' });
  await stillMarked(after);
});

test('a disk moves between pools while the guest runs', async () => {
  const db = await vm('db');
  const t = await c.api.task('POST', '/api/v1/vms/db/disks/0/move', { pool: 'shared' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const moved = await vm('db');
  assert.equal(moved.disks[0].volume.pool, 'shared');
  assert.equal(moved.host, db.host);
  await stillMarked(moved);
  execFileSync('qemu-img', ['check', '-U', path.join(c.sharedPool!, moved.disks[0].volume.path)]);
});

test('maintenance refuses when a VM cannot move, then empties the host', async () => {
  const web = await vm('web');
  const host = web.host!;
  // No host has room for a vCPU once a core may only carry a tenth of one: nothing moves.
  await c.api.request('PATCH', '/api/v1/cluster/settings', { cpuOvercommit: 0.1 });
  const refused = await c.api.task('POST', `/api/v1/hosts/${host}/maintenance`, {});
  assert.equal(refused.state, 'failed');
  assert.match(refused.error!.message, /cannot leave host .*web/);
  assert.equal((await vm('web')).host, host);
  assert.equal((await c.api.request<Host>('GET', `/api/v1/hosts/${host}`)).state, 'online');

  await c.api.request('PATCH', '/api/v1/cluster/settings', { cpuOvercommit: 4 });
  const onHost = (await c.api.request<{ items: Vm[] }>('GET', `/api/v1/vms?host=${host}`)).items.filter(
    (v) => v.state === 'running',
  );
  const t = await c.api.task('POST', `/api/v1/hosts/${host}/maintenance`, {});
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal((await c.api.request<Host>('GET', `/api/v1/hosts/${host}`)).state, 'maintenance');
  for (const v of onHost) {
    const now = await vm(v.name);
    assert.notEqual(now.host, host);
    assert.equal(now.state, 'running');
    await stillMarked(now);
  }
  // Placement skips a host in maintenance, and says so.
  const p = await c.api.request<{ verdicts: { host: string; filter?: string }[] }>(
    'POST',
    '/api/v1/cluster/placement',
    { vcpus: 1, memoryMiB: 256, template: 'tiny' },
  );
  assert.equal(p.verdicts.find((v) => v.host === host)?.filter, 'state');

  const back = await c.api.request<Host>('DELETE', `/api/v1/hosts/${host}/maintenance`);
  assert.equal(back.state, 'online');
});
