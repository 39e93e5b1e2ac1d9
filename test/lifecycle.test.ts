/**
 * The VM lifecycle on a real host: the tiny guest boots under QEMU, its guest agent answers,
 * it shuts down gracefully, survives an agent restart, and a QEMU killed from outside is
 * reported as crashed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { QgaClient } from '../src/agent/qemu/qga.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuGone, qemuPids, shellOn, startCluster } from './harness.ts';
import { until } from './sim-harness.ts';

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
  await qemuGone(vm.id);
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

/** A command run in demo's guest through its guest agent: its exit code and output. */
async function inGuest(script: string): Promise<{ exitCode: number | null; stdout: string }> {
  const r = await c.api.request<{ exitCode: number | null; stdout: string; stderr: string }>(
    'POST',
    '/api/v1/vms/demo/exec',
    { command: ['sh', '-c', script] },
  );
  return { exitCode: r.exitCode, stdout: Buffer.from(r.stdout, 'base64').toString('utf8') };
}

/** The guest's own count of its boots: a line per boot in /var/log/boots on its disk. */
const guestBoots = async () => Number((await inGuest('wc -l </var/log/boots')).stdout.trim());

test('a reboot through the guest agent is done once the guest has booted again and its agent answers', async () => {
  const before = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  // The host's count went through the agent restart above (kept in the runtime directory).
  assert.equal(before.guest.boots, 1);
  const disk = await guestBoots();
  const t = await c.api.task('POST', '/api/v1/vms/demo/reboot');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const r = t.result as { method: string; boots: number; guestAgent: boolean };
  assert.equal(r.method, 'guest-agent');
  assert.equal(r.guestAgent, true);
  // Done means back: the host saw a new boot, the guest counted it on its disk, its agent answers.
  const after = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  assert.ok(r.boots > before.guest.boots, `boots ${before.guest.boots} → ${r.boots}`);
  assert.ok(responding(after));
  assert.equal(await guestBoots(), disk + 1);
  assert.deepEqual(qemuPids(after.id), qemuPids(before.id));
});

test('a reboot the host agent missed (killed while the guest rebooted) is seen by its new boot id', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const disk = await guestBoots();
  const { task } = await c.api.request<{ task: Task }>('POST', '/api/v1/vms/demo/reboot');
  // The guest agent took the reboot; the host agent goes before the guest resets.
  await c.api.waitTask(task.id, (t) => t.progress >= 40 || t.state !== 'running', 30_000, 'asked');
  await c.agent.kill();
  // QEMU writes the console log itself: the guest's next boot shows there with no agent running.
  const consoleLog = path.join(c.hosts[0].stateDir, 'logs', vm.id, 'console.log');
  const booted = new RegExp(`TERN-GUEST-READY hostname=demo instance=\\S+ boot=${disk + 1}\\b`);
  await until(
    'the guest booted again',
    90_000,
    async () => booted.test(fs.readFileSync(consoleLog, 'utf8')) || undefined,
  );
  await c.startAgent();
  const done = await c.api.waitTask(task.id, (t) => t.state !== 'running', 150_000, 'ended');
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const after = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  assert.ok(responding(after));
  assert.equal(after.guest.boots, vm.guest.boots, 'the host missed the reset');
  assert.notEqual(after.guest.bootId, vm.guest.bootId);
  assert.equal(await guestBoots(), disk + 1, 'the guest booted once more');
});

test("a guest that cannot power off: reboot and shutdown fail with its guest agent's error; --force resets it", async () => {
  // What a systemd guest without logind does: its shutdown fails ("Failed to connect to bus"),
  // and nothing handles the ACPI button. Undone by the reset at the end (a bind mount on /run).
  const broken = await inGuest(
    "printf '#!/bin/sh\\necho Failed to connect to bus >&2\\nexit 1\\n' >/run/noshut && chmod +x /run/noshut && mount -o bind /run/noshut /sbin/shutdown && killall acpid",
  );
  assert.equal(broken.exitCode, 0);
  const tried = await inGuest('/sbin/shutdown -r +0 2>&1; echo "exit=$?"');
  assert.match(tried.stdout, /Failed to connect to bus\nexit=1/);
  const disk = await guestBoots();
  const boots = (await c.api.request<Vm>('GET', '/api/v1/vms/demo')).guest.boots;

  const reboot = await c.api.task('POST', '/api/v1/vms/demo/reboot');
  assert.equal(reboot.state, 'failed');
  assert.match(
    reboot.error?.message ?? '',
    /^demo did not reboot: guest agent error: child process has failed to shutdown; use --force to reset the VM$/,
  );
  const shutdown = await c.api.task('POST', '/api/v1/vms/demo/shutdown', { timeoutSeconds: 5 });
  assert.equal(shutdown.state, 'failed');
  assert.match(
    shutdown.error?.message ?? '',
    /did not shut down within 5 s: no reaction to the ACPI power button, and its guest agent could not \(guest agent error: child process has failed to shutdown\); use --force/,
  );
  const still = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  assert.ok(responding(still));
  assert.equal(still.guest.boots, boots, 'the host saw no new boot');
  assert.equal(await guestBoots(), disk, 'the guest did not boot again');

  const forced = await c.api.task('POST', '/api/v1/vms/demo/reboot', { force: true });
  assert.equal(forced.state, 'succeeded', JSON.stringify(forced.error));
  const r = forced.result as { method: string; boots: number };
  assert.equal(r.method, 'reset');
  assert.ok(r.boots > boots, `boots ${boots} → ${r.boots}`);
  assert.equal(await guestBoots(), disk + 1);
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/demo/console?bytes=200000');
  assert.match(text, new RegExp(`TERN-GUEST-READY hostname=demo instance=\\S+ boot=${disk + 1}\\b`));
});

test('a guest left frozen by a snapshot cut short is thawed when its agent comes back', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  await c.agent.kill();
  // What an agent killed between a snapshot's freeze and its thaw leaves behind.
  const qga = new QgaClient(path.join(c.hosts[0].stateDir, 'run', vm.id, 'qga.sock'));
  try {
    const n = await qga.execute<number>('guest-fsfreeze-freeze', undefined, { timeoutMs: 30_000 });
    assert.ok(n > 0, 'the guest froze its filesystems');
  } finally {
    qga.close();
  }
  const restartedAt = new Date().toISOString();
  await c.startAgent();
  const back = await c.api.waitVm(
    'demo',
    (v) => responding(v) && (v.guest.lastHeartbeat ?? '') > restartedAt && v.guest.frozen === false,
    60_000,
    'reattached, answering and thawed',
  );
  assert.equal(back.state, 'running');
  // The guest writes again (a frozen root filesystem would hold this write).
  await shellOn(c.hosts[0], vm.id, 'echo x > /thawed && sync && echo wrote | tr a-z A-Z', /WROTE/);
  assert.match(fs.readFileSync(c.agent.logFile, 'utf8'), /left frozen by an interrupted snapshot/);
});

test('a QEMU whose monitor does not answer is unreachable, not crashed: nothing ends it without --force', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const [pid] = qemuPids(vm.id);
  const disk = path.join(c.pool, vm.disks[0].volume.path);
  await c.agent.kill();
  // A stopped process: its monitor socket accepts a connection but nothing answers on it.
  process.kill(pid, 'SIGSTOP');
  try {
    await c.startAgent();
    const u = await c.api.waitVm('demo', (v) => v.state === 'unreachable', 30_000, 'unreachable');
    assert.match(
      u.stateReason ?? '',
      new RegExp(`QEMU runs \\(pid ${pid}\\) but its monitor does not answer`),
    );
    const refused: [string, string, unknown?][] = [
      ['POST', '/api/v1/vms/demo/start'],
      ['POST', '/api/v1/vms/demo/stop'],
      ['POST', '/api/v1/vms/demo/shutdown'],
      ['DELETE', '/api/v1/vms/demo'],
      ['POST', '/api/v1/vms/demo/snapshots', { name: 'while-unreachable' }],
    ];
    for (const [method, route, body] of refused) {
      const t = await c.api.task(method, route, body);
      assert.equal(t.state, 'failed', `${method} ${route}`);
      assert.match(t.error?.message ?? '', /is unreachable .*--force/, `${method} ${route}`);
    }
    assert.deepEqual(qemuPids(vm.id), [pid], 'its QEMU still runs');
    assert.ok(fs.existsSync(disk), 'its disk is still there');
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  // Its monitor answers again: the same QEMU, the same guest, running on.
  await c.api.waitVm('demo', responding, 60_000, 'running again');
  assert.deepEqual(qemuPids(vm.id), [pid]);
});

test('a VM whose monitor socket is gone is unreachable while its guest answers; start --force starts it afresh', async () => {
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/demo');
  const [pid] = qemuPids(vm.id);
  fs.rmSync(path.join(c.hosts[0].stateDir, 'run', vm.id, 'qmp.sock'));
  await c.agent.kill();
  await c.startAgent();
  await c.api.waitVm(
    'demo',
    (v) => v.state === 'unreachable' && v.guest.agent === 'responding',
    30_000,
    'unreachable with its guest agent answering',
  );
  const t = await c.api.task('POST', '/api/v1/vms/demo/start', { force: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const pids = qemuPids(vm.id);
  assert.equal(pids.length, 1);
  assert.notEqual(pids[0], pid, 'the old QEMU ended, a new one runs');
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
