/**
 * A real manager driving 50 simulated hosts in this process: the hosts join and show their
 * simulated facts, VMs are placed and booted on them through the normal create path, and faults
 * injected by the sim driver (a crash, a host cut off the network, a power loss) reach the
 * manager's inventory as real ones do.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import pino from 'pino';
import type { SimHosts } from '../src/agent/sim/cluster.ts';
import type { Logger } from '../src/log.ts';
import type { Host } from '../src/wire/host.ts';
import type { Vm } from '../src/wire/vm.ts';
import type { TestApi } from './harness.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

const hostCount = 50;
const bootDelayMs = 300;
// Agents log refused requests at warn and above whatever their parent's level: keep them out of the test output.
const _log: Logger = pino({ level: 'silent' }, pino.destination('/dev/null'));
let cluster: SimCluster;
let api: TestApi;
let sim: SimHosts;

const hostState = (name: string, state: Host['state']) => () =>
  api.request<Host>('GET', `/api/v1/hosts/${name}`).then((h) => (h.state === state ? h : undefined));

before(async () => {
  cluster = await startSimCluster(hostCount, { driver: { cores: 16, memoryMiB: 32 * 1024, bootDelayMs } });
  ({ api, sim } = cluster);
});

after(async () => {
  await cluster?.close();
});

test('every simulated host is online with its simulated facts', async () => {
  const hosts = await until('all online', 30_000, async () => {
    const { items } = await api.request<{ items: Host[] }>('GET', '/api/v1/hosts');
    // Facts come with the first event stream of a host, just after it counts as online.
    const ready = items.every((h) => h.state === 'online' && h.facts);
    return items.length === hostCount && ready ? items : undefined;
  });
  assert.deepEqual(
    hosts.map((h) => h.name),
    sim.hosts.map((h) => h.name),
  );
  for (const h of hosts) {
    assert.equal(h.facts?.driver, 'sim');
    assert.equal(h.facts?.accelerator, 'sim');
    assert.equal(h.facts?.hostname, h.name);
    assert.equal(h.facts?.cores, 16);
    assert.equal(h.facts?.memoryMiB, 32 * 1024);
    assert.equal(h.facts?.cpuVendor, 'GenuineIntel');
    assert.deepEqual(
      h.facts?.pools.map((p) => [p.name, p.shared]),
      [
        ['local', false],
        ['shared', true],
      ],
    );
  }
});

test('a VM created and started lands on a simulated host and its guest answers after the boot delay', async () => {
  const started = Date.now();
  const t = await api.task('POST', '/api/v1/vms', { name: 'web1', template: 'sim', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await api.request<Vm>('GET', '/api/v1/vms/web1');
  assert.ok(vm.host && sim.host(vm.host), `placed on ${vm.host}`);
  assert.equal(vm.state, 'running');
  const up = await api.waitVm(
    'web1',
    (v) => v.guest.agent === 'responding' && v.guest.hostname === 'web1',
    10_000,
    'answering',
  );
  assert.ok(Date.now() - started >= bootDelayMs);
  assert.deepEqual(up.ipAddresses, ['10.0.2.15']);
  assert.equal(sim.host(vm.host).driver.get(vm.id)?.state, 'running');
});

test('a crash injected by the sim driver shows as crashed, and the VM starts again', async () => {
  const vm = await api.request<Vm>('GET', '/api/v1/vms/web1');
  sim.host(vm.host!).driver.crash(vm.id);
  const crashed = await api.waitVm('web1', (v) => v.state === 'crashed', 10_000, 'crashed');
  assert.match(crashed.stateReason ?? '', /without being asked/);
  const t = await api.task('POST', '/api/v1/vms/web1/start');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await api.waitVm('web1', (v) => v.state === 'running' && v.guest.agent === 'responding', 10_000, 'back');
});

test('placement refuses a VM no simulated host has the memory for', async () => {
  const r = await api.raw('POST', '/api/v1/vms', {
    body: JSON.stringify({ name: 'huge', template: 'sim', memoryMiB: 48 * 1024, start: true }),
    headers: { 'content-type': 'application/json' },
  });
  // A refusal of this request (409), with each host's reason, never the manager being unavailable.
  assert.equal(r.status, 409, JSON.stringify(r.body));
  assert.equal(r.body.error?.code, 'no_capacity');
  assert.match(r.body.error?.message ?? '', /no host fits/);
});

test('a host that has no memory left refuses the start with its figures', async () => {
  // VMs the manager does not know of take 30 GiB on every host, as a real host's memory can
  // be taken behind the manager's back: the host's own refusal is what reaches the task.
  const fillers = await Promise.all(
    sim.hosts.map(async (h) => {
      const id = randomUUID();
      await h.driver.run({
        id,
        name: 'filler',
        machine: 'q35',
        cpuModel: 'host',
        vcpus: 1,
        memoryMiB: 30 * 1024,
        disks: [],
        nics: [],
      });
      return { h, id };
    }),
  );
  try {
    const t = await api.task('POST', '/api/v1/vms', {
      name: 'big',
      template: 'sim',
      memoryMiB: 4096,
      start: true,
    });
    assert.equal(t.state, 'failed');
    assert.match(
      t.error?.message ?? '',
      /cannot allocate 4096 MiB for VM big: host sim-\d+ has \d+ MiB of 32768 MiB free/,
    );
    assert.equal((await api.request<Vm>('GET', '/api/v1/vms/big')).state, 'stopped');
  } finally {
    for (const { h, id } of fillers) {
      await h.driver.act(id, 'kill');
      await h.driver.forget(id);
    }
  }
  const d = await api.task('DELETE', '/api/v1/vms/big');
  assert.equal(d.state, 'succeeded', JSON.stringify(d.error));
});

test('a host cut off the network goes offline and its VMs become unknown, until it is back', async () => {
  const vm = await api.request<Vm>('GET', '/api/v1/vms/web1');
  const host = sim.host(vm.host!);
  host.driver.setReachable(false);
  await until('offline', 10_000, hostState(host.name, 'offline'));
  await api.waitVm('web1', (v) => v.state === 'unknown', 10_000, 'unknown');
  host.driver.setReachable(true);
  await until('online again', 15_000, hostState(host.name, 'online'));
  await api.waitVm('web1', (v) => v.state === 'running', 10_000, 'running again');
});

test('a host that loses power goes offline; back on, its VMs are crashed', async () => {
  const vm = await api.request<Vm>('GET', '/api/v1/vms/web1');
  const host = sim.host(vm.host!);
  host.driver.powerOff();
  await until('offline', 10_000, hostState(host.name, 'offline'));
  await api.waitVm('web1', (v) => v.state === 'unknown', 10_000, 'unknown');
  host.driver.powerOn();
  await until('online again', 15_000, hostState(host.name, 'online'));
  const crashed = await api.waitVm('web1', (v) => v.state === 'crashed', 10_000, 'crashed');
  assert.match(crashed.stateReason ?? '', /agent was not running/);
});
