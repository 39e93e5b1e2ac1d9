/**
 * The VM lifecycle on a real host: the tiny guest boots under QEMU, its guest agent answers,
 * it shuts down gracefully, survives an agent restart, and a QEMU killed from outside is
 * reported as crashed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, startCluster } from './harness.ts';

let c: Cluster;
const responding = (vm: Vm) => vm.state === 'running' && vm.guest.agent === 'responding';

before(async () => {
  c = await startCluster('life');
});
after(async () => {
  await c?.stop();
});

test('a VM made from the tiny template boots and its guest agent answers', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'demo', template: 'tiny', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await c.api.waitVm(
    'demo',
    (v) => responding(v) && v.guest.hostname === 'demo',
    90_000,
    'answering',
  );
  assert.equal(vm.guest.os?.id, 'tern-tiny');
  assert.ok(vm.ipAddresses.includes('10.0.2.15'), `addresses: ${vm.ipAddresses}`);
  assert.ok(vm.guest.lastHeartbeat && Date.parse(vm.guest.lastHeartbeat) > Date.parse(vm.createdAt));
  assert.equal(qemuPids(vm.id).length, 1);
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/demo/console');
  assert.match(text, /TERN-GUEST-READY hostname=demo/);
});

test('pause and resume', async () => {
  const p = await c.api.task('POST', '/api/v1/vms/demo/pause');
  assert.equal(p.state, 'succeeded', JSON.stringify(p.error));
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/demo')).state, 'paused');
  const r = await c.api.task('POST', '/api/v1/vms/demo/resume');
  assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
  await c.api.waitVm('demo', responding, 30_000, 'answering after resume');
});

test('graceful shutdown powers the guest off through ACPI', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const t = await c.api.task('POST', '/api/v1/vms/demo/shutdown', { timeoutSeconds: 60 });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.deepEqual(t.result, { method: 'acpi' });
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/demo')).state, 'stopped');
  assert.deepEqual(qemuPids(vm.id), []);
});

test('the guest wrote to its disk and it persists across boots', async () => {
  const t = await c.api.task('POST', '/api/v1/vms/demo/start');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('demo', responding, 90_000, 'answering');
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/demo/console?bytes=200000');
  // The guest counts its boots in /var/log/boots on the VM's own disk.
  assert.match(text, /TERN-GUEST-READY hostname=demo instance=\S+ boot=1\b/);
  assert.match(text, /TERN-GUEST-READY hostname=demo instance=\S+ boot=2\b/, 'second boot of the same disk');
});

test('a VM keeps running through an agent restart and is reattached', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const [pid] = qemuPids(vm.id);
  await c.agent.kill();
  await c.api.waitVm('demo', (v) => v.state === 'unknown', 30_000, 'unknown while its host is away');
  assert.deepEqual(qemuPids(vm.id), [pid], 'QEMU outlives its agent');
  const restartedAt = new Date().toISOString();
  await c.startAgent();
  const back = await c.api.waitVm(
    'demo',
    (v) => responding(v) && (v.guest.lastHeartbeat ?? '') > restartedAt,
    60_000,
    'reattached and answering',
  );
  assert.equal(back.state, 'running');
  assert.deepEqual(qemuPids(vm.id), [pid], 'the same QEMU process');
});

test('a reboot through the guest agent keeps the VM running and the guest comes back', async () => {
  const before = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const t = await c.api.task('POST', '/api/v1/vms/demo/reboot');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('demo', (v) => v.guest.agent === 'not-responding', 60_000, 'rebooting');
  const after = await c.api.waitVm('demo', responding, 90_000, 'answering after the reboot');
  assert.deepEqual(qemuPids(after.id), qemuPids(before.id));
});

test('a QEMU killed from outside is reported as crashed, and starts again', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const [pid] = qemuPids(vm.id);
  process.kill(pid, 'SIGKILL');
  const crashed = await c.api.waitVm('demo', (v) => v.state === 'crashed', 30_000, 'crashed');
  assert.match(crashed.stateReason ?? '', /without being asked/);
  const t = await c.api.task('POST', '/api/v1/vms/demo/start');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('demo', responding, 90_000, 'answering after the crash');
});

test('shutdown refuses to hang: an unresponsive guest fails after the timeout, force powers off', async () => {
  const pause = await c.api.task('POST', '/api/v1/vms/demo/pause');
  assert.equal(pause.state, 'succeeded');
  // A paused guest cannot react to ACPI or its agent.
  const t = await c.api.task('POST', '/api/v1/vms/demo/shutdown', { timeoutSeconds: 2 });
  assert.equal(t.state, 'failed');
  assert.match(t.error?.message ?? '', /use --force/);
  const forced = await c.api.task('POST', '/api/v1/vms/demo/shutdown', { timeoutSeconds: 2, force: true });
  assert.equal(forced.state, 'succeeded', JSON.stringify(forced.error));
  assert.deepEqual(forced.result, { method: 'force' });
});

test('a QEMU that dies at start gives an error with the last lines of its stderr', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', {
    name: 'broken',
    template: 'tiny',
    nics: [{ mode: 'bridge', bridge: 'nosuchbridge0' }],
    start: true,
  });
  assert.equal(t.state, 'failed');
  assert.match(t.error?.message ?? '', /QEMU exited/);
  assert.match(t.error?.message ?? '', /bridge/i);
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/broken')).state, 'stopped');
});

test('delete removes the VM and its disks', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const disk = path.join(c.pool, vm.disks[0].volume.path);
  assert.ok(fs.existsSync(disk));
  const t = await c.api.task('DELETE', '/api/v1/vms/demo');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal(fs.existsSync(disk), false);
  const r = await c.api.raw('GET', '/api/v1/vms/demo');
  assert.equal(r.status, 404);
  const keep = await c.api.task('DELETE', '/api/v1/vms/broken?keepDisks=true');
  assert.equal(keep.state, 'succeeded', JSON.stringify(keep.error));
  assert.equal((keep.result as { keptDisks: unknown[] }).keptDisks.length, 1);
});
