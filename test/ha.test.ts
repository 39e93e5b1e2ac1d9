/**
 * High availability with real hosts and QEMU: a protected VM whose host loses power restarts
 * on another host, and one whose agent freezes is fenced by the host's watchdog before the
 * manager restarts it elsewhere. Throughout, a sampler checks that the VM never has two QEMU
 * processes, and at the end its disk passes `qemu-img check` and its guest agent answers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, startCluster, type TestHost } from './harness.ts';

let c: Cluster;
const answering = (vm: Vm) => vm.state === 'running' && vm.guest.agent === 'responding';

before(async () => {
  c = await startCluster('ha', { hosts: ['a', 'b'], shared: true });
  await c.api.request('PATCH', '/api/v1/ha/settings', {
    enabled: true,
    statefilePool: 'shared',
    timeoutS: 10,
  });
});
after(async () => {
  for (const stop of samplers) await stop();
  for (const h of c?.hosts ?? []) h.agent?.signal('SIGCONT');
  await c?.stop();
});

const hostNamed = (name: string) => c.hosts.find((h) => h.name === name)!;

const samplers: (() => Promise<number>)[] = [];

/** Samples the VM's QEMU processes until stopped (at the latest when the tests end): the most seen at once. */
function sampleCopies(vmId: string) {
  let most = 0;
  let running = true;
  const deadline = Date.now() + 300_000;
  const done = (async () => {
    while (running && Date.now() < deadline) {
      most = Math.max(most, qemuPids(vmId).length);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const stop = async () => {
    running = false;
    await done;
    return most;
  };
  samplers.push(stop);
  return stop;
}

/** A protected VM running on host `on`: the other hosts are in maintenance while it starts. */
async function protectedVm(name: string, on: string): Promise<Vm> {
  const others = c.hosts.filter((h) => h.name !== on).map((h) => h.name);
  for (const h of others) {
    const m = await c.api.task('POST', `/api/v1/hosts/${h}/maintenance`, {});
    assert.equal(m.state, 'succeeded', JSON.stringify(m.error));
  }
  const t = await c.api.task('POST', '/api/v1/vms', { name, template: 'tiny' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.request('PUT', `/api/v1/vms/${name}/ha`, {
    restart: 'restart',
    priority: 'high',
    order: 0,
    delayS: 0,
  });
  const started = await c.api.task('POST', `/api/v1/vms/${name}/start`);
  assert.equal(started.state, 'succeeded', JSON.stringify(started.error));
  for (const h of others) await c.api.request('DELETE', `/api/v1/hosts/${h}/maintenance`);
  const v = await c.api.waitVm(name, answering, 120_000, 'answering');
  assert.equal(v.host, on);
  return v;
}

/** The watchdog process of a host, from its pidfile. */
function watchdogPid(h: TestHost): number | null {
  try {
    return Number(fs.readFileSync(path.join(h.stateDir, 'ha', 'watchdog.pid'), 'utf8').trim()) || null;
  } catch {
    return null;
  }
}

async function restartedElsewhere(name: string, from: string): Promise<Vm> {
  return c.api.waitVm(name, (v) => v.host !== from && answering(v), 120_000, `running away from ${from}`);
}

test('a host that loses power: its protected VM restarts on the other host, never twice', async () => {
  const before = await protectedVm('web', 'a');
  const stopSampling = sampleCopies(before.id);
  const a = hostNamed('a');
  const failedAt = Date.now();
  // Power loss: the agent, the watchdog and the VM's QEMU all at once.
  a.agent.signal('SIGKILL');
  const wd = watchdogPid(a);
  if (wd) process.kill(wd, 'SIGKILL');
  for (const pid of qemuPids(before.id)) process.kill(pid, 'SIGKILL');
  const after = await restartedElsewhere('web', 'a');
  const most = await stopSampling();
  assert.equal(after.host, 'b');
  assert.ok(most <= 1, `saw ${most} QEMU processes for one VM`);
  assert.equal(qemuPids(after.id).length, 1);
  execFileSync('qemu-img', ['check', '-U', path.join(c.sharedPool!, after.disks[0].volume.path)]);
  // Not before the host was declared failed: 12 s of silence, counted from its last heartbeat
  // or renewal (each at most 2 s before the power loss).
  assert.ok(Date.now() - failedAt >= 10_000, 'restarted before the fence deadline');
});

test('a frozen agent: the watchdog fences its VM before the manager restarts it elsewhere', async () => {
  // After the power loss above, host a is back: its agent restarts on its state directory.
  const a = hostNamed('a');
  await a.start();
  await c.api.waitHost('a', (h) => h.state === 'online', 60_000, 'online again');
  const before = await protectedVm('db', 'a');
  const stopSampling = sampleCopies(before.id);
  const frozenAt = Date.now();
  a.agent.signal('SIGSTOP');
  // The watchdog, fed no more, kills the VM's QEMU at the fence deadline (10 s after the
  // host's last success)...
  await waitUntil(() => qemuPids(before.id).length === 0, 30_000, 'the watchdog fenced the VM');
  const fencedAfter = Date.now() - frozenAt;
  // The deadline runs from the host's last heartbeat or renewal, up to 2 s before the freeze.
  assert.ok(fencedAfter >= 7_500, `fenced after ${fencedAfter} ms, well before the timeout`);
  // ...and only then does the manager restart it elsewhere.
  const after = await restartedElsewhere('db', 'a');
  assert.equal(after.host, 'b');
  // Thawed, the agent finds itself fenced: it does not bring its copy back.
  a.agent.signal('SIGCONT');
  await a.agent.waitForLine('fenced', 30_000).catch(() => {});
  assert.equal(qemuPids(after.id).length, 1);
  const most = await stopSampling();
  assert.ok(most <= 1, `saw ${most} QEMU processes for one VM`);
  execFileSync('qemu-img', ['check', '-U', path.join(c.sharedPool!, after.disks[0].volume.path)]);
});

/** Polls a local fact (a process table) with a bound; there is no event for a process dying elsewhere. */
async function waitUntil(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
