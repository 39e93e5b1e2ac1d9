/**
 * High availability under faults, with real agents and QEMU: two hosts, each in its own network
 * namespace with its own path to the shared storage (test/isolation.ts), a 10 s HA timeout.
 * Every scenario ends the same way: each protected VM runs on exactly one host, its disk passes
 * `qemu-img check` and its guest agent answers. Throughout, a sampler checks that no VM ever has
 * two QEMU processes. Image locks do not cross the hosts' storage paths here (each host's FUSE
 * view locks on its own), so only fencing keeps a second copy from starting.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { failAfterMs } from '../src/manager/ha/detector.ts';
import type { Alert } from '../src/wire/alert.ts';
import type { HaHostStatus } from '../src/wire/ha.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, startCluster, type TestHost } from './harness.ts';

const timeoutS = 10;
let c: Cluster;
const answering = (vm: Vm) => vm.state === 'running' && vm.guest.agent === 'responding';

before(async () => {
  c = await startCluster('ha', { hosts: ['a', 'b'], shared: true, isolated: true });
  await c.api.request('PATCH', '/api/v1/ha/settings', { enabled: true, statefilePool: 'shared', timeoutS });
});
after(async () => {
  for (const stop of samplers) await stop();
  for (const h of c?.hosts ?? []) {
    h.agent?.signal('SIGCONT');
    h.isolation?.restoreStorage();
  }
  await c?.stop();
});

const host = (name: string) => c.hosts.find((h) => h.name === name)!;
const samplers: (() => Promise<number>)[] = [];

/** Samples the VMs' QEMU processes until stopped (at the latest when the tests end): the most one VM had at once. */
function sampleCopies(vmIds: string[]) {
  let most = 0;
  let running = true;
  const deadline = Date.now() + 300_000;
  const done = (async () => {
    while (running && Date.now() < deadline) {
      for (const id of vmIds) most = Math.max(most, qemuPids(id).length);
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
async function protectedVm(name: string, on: string, policy: { priority?: string; delayS?: number } = {}) {
  const others = c.hosts.filter((h) => h.name !== on).map((h) => h.name);
  for (const h of others) {
    const m = await c.api.task('POST', `/api/v1/hosts/${h}/maintenance`, {});
    assert.equal(m.state, 'succeeded', JSON.stringify(m.error));
  }
  const t = await c.api.task('POST', '/api/v1/vms', { name, template: 'tiny' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.request('PUT', `/api/v1/vms/${name}/ha`, {
    restart: 'restart',
    priority: policy.priority ?? 'high',
    order: 0,
    delayS: policy.delayS ?? 0,
  });
  const started = await c.api.task('POST', `/api/v1/vms/${name}/start`);
  assert.equal(started.state, 'succeeded', JSON.stringify(started.error));
  for (const h of others) await c.api.request('DELETE', `/api/v1/hosts/${h}/maintenance`);
  const v = await c.api.waitVm(name, answering, 120_000, 'answering');
  assert.equal(v.host, on);
  // Only a VM its host confirmed it protects (and so kills when it fences) fails over.
  const vms = await c.api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000');
  const expected = vms.items.filter((x) => x.host === on && x.ha.restart !== 'none').length;
  await haState(on, (s) => s.leaseSeen && s.protecting === expected, 30_000, `protecting ${expected} VMs`);
  return v;
}

/** The end of every scenario: on `on`, exactly one QEMU, a sound disk, a guest that answers. */
async function soundOn(name: string, on: string): Promise<Vm> {
  const vm = await c.api.waitVm(name, (v) => v.host === on && answering(v), 120_000, `answering on ${on}`);
  assert.equal(qemuPids(vm.id).length, 1, `${name}: not exactly one QEMU process`);
  execFileSync('qemu-img', ['check', '-U', path.join(c.sharedPool!, vm.disks[0].volume.path)]);
  return vm;
}

/** Stops and deletes the scenario's VMs, so the next one starts on idle hosts. */
async function remove(...names: string[]) {
  for (const name of names) {
    const s = await c.api.task('POST', `/api/v1/vms/${name}/stop`, { force: true });
    assert.equal(s.state, 'succeeded', JSON.stringify(s.error));
    const d = await c.api.task('DELETE', `/api/v1/vms/${name}`);
    assert.equal(d.state, 'succeeded', JSON.stringify(d.error));
  }
}

async function backOnline(h: TestHost) {
  await c.api.waitHost(h.name, (x) => x.state === 'online', 60_000, 'online again');
  await haState(h.name, (s) => s.state === 'healthy' && s.leaseSeen, 60_000, 'healthy again');
}

/**
 * Waits until the HA watch reports `host` in a state that satisfies `ok`. The watch publishes
 * no events, so its status is polled, with a bound.
 */
async function haState(
  name: string,
  ok: (s: HaHostStatus) => boolean,
  timeoutMs: number,
  what: string,
): Promise<HaHostStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: HaHostStatus | undefined;
  for (;;) {
    const r = await c.api.request<{ items: HaHostStatus[] }>('GET', '/api/v1/ha/status');
    last = r.items.find((s) => s.host === name);
    if (last && ok(last)) return last;
    if (Date.now() > deadline)
      throw new Error(`host ${name}: not ${what} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Polls a local fact (a process table) with a bound; there is no event for a process dying elsewhere. */
async function waitUntil(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`not ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const activeAlerts = async () => (await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items;

/** Past T_fail and then some: long enough that a wrong failover would have happened. */
const pastFailMs = failAfterMs(timeoutS) + 3000;

test('power loss: the protected VM restarts on the other host, never twice', async () => {
  const vm = await protectedVm('power', 'a');
  const stopSampling = sampleCopies([vm.id]);
  const failedAt = Date.now();
  host('a').isolation!.powerOff();
  await soundOn('power', 'b');
  // Not before the host was declared failed: T_fail of silence, counted from its last
  // heartbeat or renewal (each at most 2 s before the power loss).
  assert.ok(Date.now() - failedAt >= failAfterMs(timeoutS) - 2000, 'restarted before the fence deadline');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await host('a').start();
  await backOnline(host('a'));
  await remove('power');
});

test('network cut to the manager only: the host is isolated, its VM stays', async () => {
  const vm = await protectedVm('netcut', 'a');
  const stopSampling = sampleCopies([vm.id]);
  const a = host('a');
  a.isolation!.cutNetwork();
  try {
    // The lease still renews: isolated, never failed, however long.
    const s = await haState(
      'a',
      (x) => x.networkSilentMs >= pastFailMs,
      pastFailMs + 30_000,
      'silent past T_fail',
    );
    assert.equal(s.state, 'isolated');
    assert.equal(qemuPids(vm.id).length, 1);
    assert.ok(
      (await activeAlerts()).some((x) => x.id.endsWith(':ha-isolated') && x.message.includes('host a ')),
    );
    // The manager's link to the agent gives up on its own clock: let it, so the host does not
    // drop offline after it is back.
    await c.api.waitHost('a', (h) => h.state === 'offline', 30_000, 'offline to the manager');
  } finally {
    a.isolation!.restoreNetwork();
  }
  await backOnline(a);
  assert.ok(!(await activeAlerts()).some((x) => x.id.endsWith(':ha-isolated')), 'the alert is cleared');
  await soundOn('netcut', 'a');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await remove('netcut');
});

test('storage cut only: the host still answers the manager, its VM stays', async () => {
  const vm = await protectedVm('diskcut', 'a');
  const stopSampling = sampleCopies([vm.id]);
  const a = host('a');
  a.isolation!.cutStorage();
  try {
    const s = await haState(
      'a',
      (x) => x.leaseSilentMs >= pastFailMs,
      pastFailMs + 30_000,
      'lease silent past T_fail',
    );
    assert.equal(s.state, 'storage-lost');
    assert.equal(qemuPids(vm.id).length, 1);
  } finally {
    a.isolation!.restoreStorage();
  }
  await backOnline(a);
  await soundOn('diskcut', 'a');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await remove('diskcut');
});

test('network and storage cut: the host fences itself, then the VM restarts elsewhere', async () => {
  const vm = await protectedVm('bothcut', 'a');
  const stopSampling = sampleCopies([vm.id]);
  const a = host('a');
  const cutAt = Date.now();
  a.isolation!.cutNetwork();
  a.isolation!.cutStorage();
  try {
    await waitUntil(() => qemuPids(vm.id).length === 0, 30_000, 'fenced');
    const fencedAfter = Date.now() - cutAt;
    // From the host's last heartbeat or renewal, up to 2 s before the cut.
    assert.ok(fencedAfter >= timeoutS * 1000 - 2500, `fenced after ${fencedAfter} ms, before its deadline`);
    await soundOn('bothcut', 'b');
    await c.api.waitHost('a', (h) => h.state === 'offline', 30_000, 'offline to the manager');
  } finally {
    a.isolation!.restoreStorage();
    a.isolation!.restoreNetwork();
  }
  // Back, host a stays fenced until both signals return, and does not bring its copy back.
  await backOnline(a);
  const final = await soundOn('bothcut', 'b');
  assert.equal(final.host, 'b');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await remove('bothcut');
});

test('a frozen agent: the watchdog fences its VM before the manager restarts it elsewhere', async () => {
  const vm = await protectedVm('frozen', 'a');
  const stopSampling = sampleCopies([vm.id]);
  const a = host('a');
  const frozenAt = Date.now();
  a.agent.signal('SIGSTOP');
  // The watchdog, fed no more, kills the VM's QEMU at the fence deadline...
  await waitUntil(() => qemuPids(vm.id).length === 0, 30_000, 'the watchdog fenced the VM');
  const fencedAfter = Date.now() - frozenAt;
  assert.ok(fencedAfter >= timeoutS * 1000 - 2500, `fenced after ${fencedAfter} ms, before its deadline`);
  // ...and only then does the manager restart it elsewhere.
  await soundOn('frozen', 'b');
  await c.api.waitHost('a', (h) => h.state === 'offline', 30_000, 'offline to the manager');
  // Thawed, the agent finds itself fenced: it does not bring its copy back.
  a.agent.signal('SIGCONT');
  await backOnline(a);
  await soundOn('frozen', 'b');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await remove('frozen');
});

test('the manager killed during a failover: the restarted manager finishes it, nothing runs twice', async () => {
  // The second VM waits 8 s after the first: the manager dies in between.
  const first = await protectedVm('first', 'b', { priority: 'high' });
  const second = await protectedVm('second', 'b', { priority: 'low', delayS: 8 });
  const stopSampling = sampleCopies([first.id, second.id]);
  host('b').isolation!.powerOff();
  await c.api.waitVm('first', (v) => v.host === 'a' && v.state === 'running', 60_000, 'restarted on a');
  const tasks = await c.api.request<{ items: Task[] }>('GET', '/api/v1/tasks?state=running&limit=100');
  const running = tasks.items.filter((t) => t.kind === 'ha.failover');
  assert.equal(running.length, 1, 'one failover task running when the manager dies');
  assert.notEqual((await c.api.request<Vm>('GET', '/api/v1/vms/second')).host, 'a');
  await c.manager.kill();
  await c.startManager();
  const resumed = await c.api.waitTask(
    running[0].id,
    (t) => t.state === 'succeeded' || t.state === 'failed',
    90_000,
    'done',
  );
  assert.equal(resumed.state, 'succeeded', JSON.stringify(resumed.error));
  await soundOn('first', 'a');
  await soundOn('second', 'a');
  assert.ok((await stopSampling()) <= 1, 'two QEMU processes for one VM');
  await host('b').start();
  await backOnline(host('b'));
  await remove('first', 'second');
});
