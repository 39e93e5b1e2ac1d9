/**
 * The manager's own disk fills up: its database is on a small tmpfs that a file fills. Reads
 * still answer, writes say "the manager's disk is full" (507), an alert says so, hosts'
 * heartbeats still answer; and when space returns what happened meanwhile is recorded from the
 * agents' reality (a VM paused on a full pool shows paused, with its alert) and a creation whose
 * undoing could not be recorded is undone again. Simulated hosts: QEMU is not the point here.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { loadMembership } from '../src/agent/enrol.ts';
import { requestJson } from '../src/http/json-client.ts';
import { tlsFetch } from '../src/pki/identity.ts';
import type { Alert } from '../src/wire/alert.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type TestApi, tempDir } from './harness.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

const root = process.getuid?.() === 0;
const skip = !root && 'needs root to mount a tmpfs';
let c: SimCluster;
let managerDir: string;
let filler: string;
let steady: Vm;
let stuckTask: Task;
let reader: TestApi;

before(async () => {
  if (!root) return;
  managerDir = tempDir('tern-manager-full');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', managerDir]);
  c = await startSimCluster(1, { managerDir });
});
after(async () => {
  await c?.close();
  if (managerDir) {
    execFileSync('umount', ['-l', managerDir]);
    fs.rmSync(managerDir, { recursive: true, force: true });
  }
});

/** Writes a file until the file system has no block left. */
function fillUp(dir: string): string {
  const file = path.join(dir, 'filler');
  const fd = fs.openSync(file, 'w');
  try {
    for (const size of [1 << 20, 4096]) {
      const chunk = Buffer.alloc(size, 1);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

test("with the manager's disk full, reads answer, writes say so, an alert says so", { skip }, async () => {
  const created = await c.api.task('POST', '/api/v1/vms', { name: 'steady', template: 'sim', start: true });
  assert.equal(created.state, 'succeeded', JSON.stringify(created.error));
  steady = await c.api.waitVm('steady', (v) => v.state === 'running', 10_000, 'running');
  // A token never used yet: its first use is recorded, which must not fail a read.
  const { token } = await c.api.request<{ token: string }>('POST', '/api/v1/tokens', { name: 'reader' });
  reader = c.api.as(token);
  // A creation that will fail, and whose undoing cannot be recorded, once the disk is full.
  const driver = c.sim.hosts[0].driver;
  driver.faults.hangNext('run');
  stuckTask = (
    await c.api.request<{ task: Task }>('POST', '/api/v1/vms', {
      name: 'stuck',
      template: 'sim',
      start: true,
    })
  ).task;
  await until('starting the stuck VM', 10_000, async () => (driver.faults.hanging === 1 ? true : undefined));

  filler = fillUp(managerDir);
  // What SQLite still has room for in its write-ahead log varies: write until it is full.
  let refused: Awaited<ReturnType<TestApi['raw']>> | undefined;
  for (let i = 0; i < 5000 && !refused; i++) {
    const r = await c.api.raw('POST', '/api/v1/projects', {
      body: JSON.stringify({ name: `filling-${i}`, description: 'x'.repeat(1000) }),
      headers: { 'content-type': 'application/json' },
    });
    if (r.status !== 201) refused = r;
  }
  assert.ok(refused, 'a write is refused once the disk is full');
  assert.equal(refused.status, 507, JSON.stringify(refused.body));
  assert.equal(refused.body.error?.code, 'manager_disk_full');
  assert.match(refused.body.error?.message ?? '', /the manager's disk is full/);

  // Reads answer, also the first one of a token (whose use cannot be recorded now).
  const vms = await reader.raw('GET', '/api/v1/vms');
  assert.equal(vms.status, 200, JSON.stringify(vms.body));
  const alerts = await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts');
  const full = alerts.items.find((a) => a.id === 'manager:disk-full');
  assert.ok(full, `the full disk is an alert: ${JSON.stringify(alerts.items)}`);
  assert.equal(full.severity, 'critical');
  assert.match(full.message, new RegExp(`the manager's disk is full: its database ${managerDir}/tern.db`));

  // A host's heartbeat still answers (the host is heard; when is bookkeeping).
  const m = loadMembership(c.sim.hosts[0].stateDir);
  assert.ok(m);
  const f = tlsFetch(m.identity);
  try {
    const reply = await requestJson<{ host: string }>(`${m.manager}/cluster/v1/heartbeat`, {
      method: 'POST',
      headers: {},
      body: { haGeneration: null },
      timeoutMs: 10_000,
      unreachable: (why) => why,
      peer: 'the manager',
      fetch: f,
    });
    assert.equal(reply.host, c.sim.hosts[0].name);
  } finally {
    await f.close();
  }

  // Meanwhile the VM's pool fills: its host pauses it, and the manager cannot record that.
  driver.storageFull(steady.id);
  // The stuck creation fails; undoing it cannot be recorded, so it stays half-done for now.
  driver.faults.clear(new Error('simulated start failure'));
  const ended = await c.manager.services.tasks.settled(stuckTask.id);
  assert.equal(ended.state, 'running', 'the end of the task could not be recorded');
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/stuck')).state, 'creating');
});

test('when space returns, the agents’ reality and what could not be written are recorded', {
  skip,
}, async () => {
  fs.rmSync(filler);
  const paused = await c.api.waitVm(
    'steady',
    (v) => v.state === 'paused',
    20_000,
    'paused as its host reports',
  );
  assert.match(paused.stateReason ?? '', /^storage full/);
  const alerts = await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts?all=true');
  const storage = alerts.items.find((a) => a.id === `vm:${steady.id}:storage-full`);
  assert.ok(storage && storage.clearedAt === null, 'the storage-full alert of the VM is active');
  const full = alerts.items.find((a) => a.id === 'manager:disk-full');
  assert.ok(full, 'the full disk is in the alert history');
  assert.ok(full.clearedAt, 'and cleared');

  const undone = await c.api.waitTask(stuckTask.id, (t) => t.state === 'failed', 20_000, 'undone');
  // It failed while nothing could be recorded (its start failed, and so did noting that).
  assert.match(undone.error?.message ?? '', /the manager's disk is full/);
  const gone = await c.api.raw('GET', '/api/v1/vms/stuck');
  assert.equal(gone.status, 404, 'the half-created VM is removed');

  const write = await c.api.raw('POST', '/api/v1/projects', {
    body: JSON.stringify({ name: 'after' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(write.status, 201, JSON.stringify(write.body));
});
