/**
 * Placement rules at scale, through the real manager and its HTTP API: simulated hosts of two CPU
 * generations of one vendor, a shared pool every host sees (the template lives there, so a VM may
 * go anywhere) and each host's local pool. Anti-affinity, affinity, capacity under overcommit,
 * spread and pack, the CPU baseline and what it lets migrate, maintenance that evacuates a host
 * or refuses to, and N+k capacity planning, each checked against what the hosts really run.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { SimClock } from '../src/agent/sim/clock.ts';
import type { SimHosts } from '../src/agent/sim/cluster.ts';
import type { Logger } from '../src/log.ts';
import type { ClusterSettings } from '../src/wire/cluster.ts';
import type { Host } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import type { TestApi } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

const hostCount = 32;
const cores = 6;
const memoryMiB = 16 * 1024;
const _log: Logger = pino({ level: 'silent' }, pino.destination('/dev/null'));

// Two generations of Intel Xeon Scalable as /proc/cpuinfo prints them: Skylake-SP (Gold 6130)
// and Cascade Lake (Gold 6230), which adds VNNI and no longer needs the Meltdown page-table
// isolation (it reports arch_capabilities instead of pti).
const skylakeFlags =
  'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb cat_l3 cdp_l3 invpcid_single pti intel_ppin ssbd mba ibrs ibpb stibp tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm cqm mpx rdt_a avx512f avx512dq rdseed adx smap clflushopt clwb intel_pt avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local dtherm ida arat pln pts pku ospke md_clear flush_l1d'.split(
    ' ',
  );
const cascadelakeFlags = [...skylakeFlags.filter((f) => f !== 'pti'), 'avx512_vnni', 'arch_capabilities'];
const oldCpu = {
  vendor: 'GenuineIntel',
  model: 'Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz',
  flags: skylakeFlags,
};
const newCpu = {
  vendor: 'GenuineIntel',
  model: 'Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz',
  flags: cascadelakeFlags,
};
/** The first half of the hosts is the older generation. */
const isOld = (index: number) => index < hostCount / 2;

let cluster: SimCluster;
let api: TestApi;
let sim: SimHosts;
let oldHosts: string[];
let newHosts: string[];
let defaults: ClusterSettings;

interface Refusal {
  status: number;
  message: string;
}

/** A request whose refusal is the point: the status and message instead of a throw. */
async function attempt<T>(method: string, url: string, body?: unknown): Promise<T | Refusal> {
  const r = await api.raw(method, url, {
    ...(body === undefined
      ? {}
      : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
  if (r.status >= 400) return { status: r.status, message: r.body.error?.message ?? JSON.stringify(r.body) };
  return r.body as T;
}

function refused(r: unknown): r is Refusal {
  return typeof r === 'object' && r !== null && 'status' in r && 'message' in r;
}

interface NewVm {
  name: string;
  groups?: string[];
  cpuMode?: 'compat' | 'host';
  vcpus?: number;
}

/**
 * Creates and starts VMs one request at a time (each placement sees the ones before it, as a
 * script creating VMs does), then waits for all their tasks.
 */
async function createVms(vms: NewVm[]): Promise<Vm[]> {
  const tasks: Task[] = [];
  for (const vm of vms) {
    const r = await api.request<{ task: Task }>('POST', '/api/v1/vms', {
      template: 'sim',
      start: true,
      ...vm,
    });
    tasks.push(r.task);
  }
  const done = await Promise.all(tasks.map((t) => api.settle(t)));
  for (const [i, t] of done.entries())
    assert.equal(t.state, 'succeeded', `${vms[i].name}: ${JSON.stringify(t.error)}`);
  return Promise.all(vms.map((vm) => api.request<Vm>('GET', `/api/v1/vms/${vm.name}`)));
}

async function allVms(): Promise<Vm[]> {
  return (await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000')).items;
}

/** Every VM gone, so each test starts from an empty cluster. */
async function removeAllVms(): Promise<void> {
  const vms = await allVms();
  const tasks = await Promise.all(
    vms.map((vm) => api.request<{ task: Task }>('DELETE', `/api/v1/vms/${vm.name}?force=true`)),
  );
  const done = await Promise.all(tasks.map((t) => api.settle(t.task)));
  for (const t of done) assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.deepEqual(await allVms(), []);
}

/** How many VMs each host holds, by host name. */
function perHost(vms: readonly Vm[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const vm of vms) if (vm.host) n.set(vm.host, (n.get(vm.host) ?? 0) + 1);
  return n;
}

/** The simulated hosts that really run the VM (its process is there and running). */
function runningOn(vm: Vm): string[] {
  return sim.hosts.filter((h) => h.driver.get(vm.id)?.state === 'running').map((h) => h.name);
}

async function settings(changes: Partial<ClusterSettings>): Promise<ClusterSettings> {
  return api.request<ClusterSettings>('PATCH', '/api/v1/cluster/settings', changes);
}

before(async () => {
  cluster = await startSimCluster(hostCount, {
    // Simulated time 20 times faster: a 512 MiB migration takes some 20 ms.
    clock: new SimClock(20),
    driver: (_name, i) => ({
      cores,
      memoryMiB,
      cpu: isOld(i) ? oldCpu : newCpu,
      bootDelayMs: 100,
      guestHeartbeatMs: 0,
    }),
  });
  ({ api, sim } = cluster);
  oldHosts = sim.hosts.filter((_, i) => isOld(i)).map((h) => h.name);
  newHosts = sim.hosts.filter((_, i) => !isOld(i)).map((h) => h.name);
  defaults = await api.request<ClusterSettings>('GET', '/api/v1/cluster/settings');
});

after(async () => {
  await cluster?.close();
});

test('the hosts report both CPU generations, and the baseline is the older one', async () => {
  const { items } = await api.request<{ items: Host[] }>('GET', '/api/v1/hosts?limit=1000');
  assert.equal(items.length, hostCount);
  for (const h of items) {
    const old = oldHosts.includes(h.name);
    assert.equal(h.facts?.cpuModel, old ? oldCpu.model : newCpu.model, h.name);
    assert.deepEqual(
      h.facts?.pools.map((p) => [p.name, p.shared]),
      [
        ['local', false],
        ['shared', true],
      ],
    );
  }
  const cluster = await api.request<{
    hosts: { online: number };
    cpuBaseline: { model: string; reason: string };
    capacity: { cores: number; memoryMiB: number };
  }>('GET', '/api/v1/cluster');
  assert.equal(cluster.hosts.online, hostCount);
  assert.equal(cluster.capacity.cores, hostCount * cores);
  assert.equal(cluster.cpuBaseline.model, 'Skylake-Server-noTSX-IBRS', cluster.cpuBaseline.reason);
  // The reason says which hosts hold the cluster back and what they lack.
  assert.match(cluster.cpuBaseline.reason, new RegExp(`${hostCount / 2} of ${hostCount} lack Cascadelake`));
  assert.match(cluster.cpuBaseline.reason, /avx512_vnni/);
});

test('anti-affinity: one member per host, and a member more than hosts is refused', async () => {
  await api.request('POST', '/api/v1/placement-groups', { name: 'web', kind: 'anti-affinity' });
  const vms = await createVms(
    Array.from({ length: hostCount }, (_, i) => ({ name: `web-${i + 1}`, groups: ['web'] })),
  );
  const hosts = new Set(vms.map((vm) => vm.host));
  assert.equal(hosts.size, hostCount, 'every member on its own host');
  for (const vm of vms) {
    assert.equal(vm.state, 'running');
    assert.deepEqual(runningOn(vm), [vm.host], vm.name);
  }
  const r = await attempt<unknown>('POST', '/api/v1/vms', {
    name: 'web-extra',
    template: 'sim',
    groups: ['web'],
    start: true,
  });
  assert.ok(refused(r), 'the extra member is refused');
  assert.equal(r.status, 409, r.message);
  assert.match(r.message, new RegExp(`all ${hostCount} hosts rejected: ${hostCount} by anti-affinity`));
  const gone = await attempt<Vm>('GET', '/api/v1/vms/web-extra');
  assert.ok(refused(gone) && gone.status === 404, 'nothing is left of the refused VM');
  const group = (
    await api.request<{ items: { name: string; members: string[] }[] }>('GET', '/api/v1/placement-groups')
  ).items.find((g) => g.name === 'web');
  assert.equal(group?.members.length, hostCount);
});

test('maintenance of a host whose anti-affinity member cannot go anywhere is refused, or stops it', async () => {
  const before = new Map((await allVms()).map((vm) => [vm.name, vm.host]));
  const host = newHosts[0];
  const member = [...before].find(([, h]) => h === host)![0];
  const t = await api.task('POST', `/api/v1/hosts/${host}/maintenance`, {});
  assert.equal(t.state, 'failed');
  assert.match(t.error?.message ?? '', new RegExp(`1 VM\\(s\\) cannot leave host ${host}: ${member} \\(`));
  assert.match(t.error?.message ?? '', /anti-affinity/);
  assert.match(t.error?.message ?? '', /nothing was moved/);
  // Nothing moved, nothing stopped, and the host takes VMs again.
  const now = await allVms();
  assert.deepEqual(new Map(now.map((vm) => [vm.name, vm.host])), before);
  assert.ok(now.every((vm) => vm.state === 'running'));
  assert.equal((await api.request<Host>('GET', `/api/v1/hosts/${host}`)).state, 'online');

  const stop = await api.task('POST', `/api/v1/hosts/${host}/maintenance`, { stopUnmovable: true });
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
  assert.deepEqual(stop.result, { host, state: 'maintenance', moved: [], stopped: [member] });
  const stopped = await api.request<Vm>('GET', `/api/v1/vms/${member}`);
  assert.equal(stopped.state, 'stopped');
  assert.equal(stopped.host, host);
  assert.deepEqual(runningOn(stopped), []);
  assert.equal((await api.request<Host>('GET', `/api/v1/hosts/${host}`)).state, 'maintenance');
  const others = (await allVms()).filter((vm) => vm.name !== member);
  assert.ok(others.every((vm) => vm.state === 'running' && vm.host === before.get(vm.name)));

  const back = await api.request<Host>('DELETE', `/api/v1/hosts/${host}/maintenance`);
  assert.equal(back.state, 'online');
  await removeAllVms();
  await api.request('DELETE', '/api/v1/placement-groups/web');
});

test('affinity: every member lands on the host of the first', async () => {
  await api.request('POST', '/api/v1/placement-groups', { name: 'db', kind: 'affinity' });
  // Other VMs first, so the first member's host is not simply the emptiest one by name.
  await createVms(Array.from({ length: 8 }, (_, i) => ({ name: `filler-${i + 1}` })));
  const [first] = await createVms([{ name: 'db-1', groups: ['db'] }]);
  assert.ok(first.host);
  const rest = await createVms(
    Array.from({ length: 5 }, (_, i) => ({ name: `db-${i + 2}`, groups: ['db'] })),
  );
  for (const vm of rest) {
    assert.equal(vm.host, first.host, vm.name);
    assert.deepEqual(runningOn(vm), [first.host], vm.name);
  }
  // Placement says why every other host was passed over.
  const p = await api.request<{ host: string; verdicts: { host: string; filter?: string }[] }>(
    'POST',
    '/api/v1/cluster/placement',
    { vcpus: 1, memoryMiB: 512, template: 'sim', groups: ['db'] },
  );
  assert.equal(p.host, first.host);
  assert.deepEqual(
    p.verdicts.filter((v) => v.host !== first.host).map((v) => v.filter),
    Array(hostCount - 1).fill('affinity'),
  );
  await removeAllVms();
  await api.request('DELETE', '/api/v1/placement-groups/db');
});

test('capacity: with a low CPU overcommit, exactly what cores × ratio allow is accepted', async () => {
  const ratio = 0.5;
  const vcpus = 2;
  await settings({ cpuOvercommit: ratio });
  try {
    // Expected from what the hosts report: each fits floor(cores × ratio / vcpus) VMs (by CPU;
    // memory allows far more), here 6 × 0.5 / 2 → 1.
    const { items } = await api.request<{ items: Host[] }>('GET', '/api/v1/hosts?limit=1000');
    const expected = items.reduce((n, h) => {
      const byCpu = Math.floor((h.facts!.cores * ratio) / vcpus);
      const byMemory = Math.floor(h.facts!.memoryMiB / 512);
      return n + Math.min(byCpu, byMemory);
    }, 0);
    assert.equal(expected, hostCount);
    const tasks: Task[] = [];
    let refusal: Refusal | null = null;
    for (let i = 1; i <= expected + 5 && !refusal; i++) {
      const r = await attempt<{ task: Task }>('POST', '/api/v1/vms', {
        name: `cap-${i}`,
        template: 'sim',
        vcpus,
        start: true,
      });
      if (refused(r)) refusal = r;
      else tasks.push(r.task);
    }
    assert.equal(tasks.length, expected, 'VMs accepted');
    assert.ok(refusal, 'a VM beyond the capacity is refused');
    assert.equal(refusal.status, 409);
    assert.match(refusal.message, new RegExp(`all ${hostCount} hosts rejected: ${hostCount} by capacity`));
    for (const t of await Promise.all(tasks.map((x) => api.settle(x))))
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    const vms = await allVms();
    assert.ok(vms.every((vm) => vm.state === 'running'));
    assert.ok([...perHost(vms).values()].every((n) => n === 1));
    // The reason names the numbers.
    const p = await api.request<{ verdicts: { reason?: string }[] }>('POST', '/api/v1/cluster/placement', {
      vcpus,
      memoryMiB: 512,
      template: 'sim',
    });
    assert.match(p.verdicts[0].reason ?? '', /needs 2 vCPUs, 1 free of 6 cores × 0\.5/);
  } finally {
    await settings({ cpuOvercommit: defaults.cpuOvercommit });
  }
  await removeAllVms();
});

test('spread puts two VMs on every host; pack puts them all on one', async () => {
  assert.equal((await settings({ strategy: 'spread' })).strategy, 'spread');
  const spread = await createVms(Array.from({ length: 2 * hostCount }, (_, i) => ({ name: `s-${i + 1}` })));
  const counts = perHost(spread);
  assert.equal(counts.size, hostCount, 'every host used');
  assert.ok(
    [...counts.values()].every((n) => n === 2),
    JSON.stringify([...counts]),
  );
  await removeAllVms();

  await settings({ strategy: 'pack' });
  try {
    const packed = await createVms(Array.from({ length: 12 }, (_, i) => ({ name: `p-${i + 1}` })));
    // 12 VMs of 1 vCPU and 512 MiB fit one host of 6 cores × 4 and 16 GiB.
    assert.equal(perHost(packed).size, 1, JSON.stringify([...perHost(packed)]));
  } finally {
    await settings({ strategy: defaults.strategy });
  }
  await removeAllVms();
});

test('CPU baseline: a compat VM live-migrates across generations, a host-CPU VM only to an identical host', async () => {
  const baseline = (await api.request<{ cpuBaseline: { model: string } }>('GET', '/api/v1/cluster'))
    .cpuBaseline.model;
  const [compat] = await createVms([{ name: 'compat' }]);
  assert.equal(compat.cpuModel, baseline);
  // Onto the newer generation first, then back down to the older one, live.
  const [newHost, otherNewHost] = newHosts.filter((h) => h !== compat.host);
  const oldHost = oldHosts.find((h) => h !== compat.host)!;
  let from = compat.host;
  for (const to of [newHost, oldHost]) {
    const t = await api.task('POST', '/api/v1/vms/compat/migrate', { to, mode: 'live' });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    // Live, over the shared pool: only its memory moved.
    assert.partialDeepStrictEqual(t.result, { from, to, mode: 'live', storage: 'shared' });
    from = to;
    const vm = await api.request<Vm>('GET', '/api/v1/vms/compat');
    assert.equal(vm.host, to);
    assert.equal(vm.state, 'running');
    assert.deepEqual(runningOn(vm), [to]);
  }

  // A VM with the host CPU, put on a new-generation host by following a VM already there.
  await api.request('POST', '/api/v1/placement-groups', { name: 'pin', kind: 'affinity' });
  await createVms([{ name: 'anchor', groups: ['pin'] }]);
  const anchorHost = (await api.request<Vm>('GET', '/api/v1/vms/anchor')).host!;
  if (!newHosts.includes(anchorHost)) {
    const t = await api.task('POST', '/api/v1/vms/anchor/migrate', { to: newHost });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  }
  const [hostCpu] = await createVms([{ name: 'hostcpu', cpuMode: 'host', groups: ['pin'] }]);
  assert.ok(newHosts.includes(hostCpu.host!), `on ${hostCpu.host}`);
  assert.equal(hostCpu.cpuModel, 'host');
  await api.request('DELETE', '/api/v1/placement-groups/pin');

  const preview = await api.request<{
    placement: { verdicts: { host: string; filter?: string; reason?: string }[] };
  }>('POST', '/api/v1/vms/hostcpu/migrate/preview', {});
  const verdict = (h: string) => preview.placement.verdicts.find((v) => v.host === h)!;
  for (const h of oldHosts) assert.equal(verdict(h).filter, 'cpu', h);
  assert.match(verdict(oldHost).reason ?? '', /not the same CPU as the VM's .*lacks .*avx512_vnni/);

  const r = await attempt('POST', '/api/v1/vms/hostcpu/migrate', { to: oldHost });
  assert.ok(refused(r));
  assert.equal(r.status, 409, r.message);
  assert.match(r.message, new RegExp(`host ${oldHost} cannot take VM hostcpu: not the same CPU`));
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/hostcpu')).host, hostCpu.host);

  const to = [newHost, otherNewHost].find((h) => h !== hostCpu.host)!;
  const t = await api.task('POST', '/api/v1/vms/hostcpu/migrate', { to });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const moved = await api.request<Vm>('GET', '/api/v1/vms/hostcpu');
  assert.equal(moved.host, to);
  assert.deepEqual(runningOn(moved), [to]);
  // Placement left alone picks only new-generation hosts for it.
  const auto = await api.task('POST', '/api/v1/vms/hostcpu/migrate', {});
  assert.equal(auto.state, 'succeeded', JSON.stringify(auto.error));
  assert.ok(newHosts.includes((await api.request<Vm>('GET', '/api/v1/vms/hostcpu')).host!));
  await removeAllVms();
});

test('maintenance evacuates a busy host, takes no new VMs, and `off` brings it back', async () => {
  // Pack puts the VMs on one host.
  await settings({ strategy: 'pack' });
  let vms: Vm[];
  try {
    vms = await createVms(Array.from({ length: 10 }, (_, i) => ({ name: `busy-${i + 1}` })));
  } finally {
    await settings({ strategy: defaults.strategy });
  }
  const host = vms[0].host!;
  assert.ok(vms.every((vm) => vm.host === host));

  const t = await api.task('POST', `/api/v1/hosts/${host}/maintenance`, {});
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const result = t.result as { state: string; moved: string[]; stopped: string[] };
  assert.equal(result.state, 'maintenance');
  assert.deepEqual([...result.moved].sort(), vms.map((vm) => vm.name).sort());
  assert.deepEqual(result.stopped, []);
  assert.equal((await api.request<Host>('GET', `/api/v1/hosts/${host}`)).state, 'maintenance');
  for (const vm of await allVms()) {
    assert.equal(vm.state, 'running', vm.name);
    assert.notEqual(vm.host, host, vm.name);
    assert.deepEqual(runningOn(vm), [vm.host], `${vm.name} runs on exactly its inventory host`);
  }
  assert.equal(
    sim
      .host(host)
      .driver.list()
      .filter((v) => v.state === 'running').length,
    0,
  );

  // Spread would pick the empty host first; in maintenance it takes nothing.
  const fresh = await createVms(Array.from({ length: hostCount }, (_, i) => ({ name: `new-${i + 1}` })));
  assert.ok(fresh.every((vm) => vm.host !== host));
  const p = await api.request<{ verdicts: { host: string; filter?: string }[] }>(
    'POST',
    '/api/v1/cluster/placement',
    { vcpus: 1, memoryMiB: 512, template: 'sim' },
  );
  assert.equal(p.verdicts.find((v) => v.host === host)?.filter, 'state');

  const back = await api.request<Host>('DELETE', `/api/v1/hosts/${host}/maintenance`);
  assert.equal(back.state, 'online');
  // Now the emptiest host again, it is where the next VM goes.
  const [next] = await createVms([{ name: 'after-maintenance' }]);
  assert.equal(next.host, host);
  await removeAllVms();
});

test('capacity planning: tolerating a host failure fits fewer VMs than tolerating none', async () => {
  await createVms(Array.from({ length: hostCount }, (_, i) => ({ name: `base-${i + 1}` })));
  const ask = (tolerate: number) =>
    api.request<{ fits: number; perHost: { host: string; count: number }[]; limitedBy: string }>(
      'POST',
      '/api/v1/cluster/capacity',
      { size: { vcpus: 2, memoryMiB: 2048, diskBytes: 0 }, tolerate },
    );
  const [none, one] = [await ask(0), await ask(1)];
  // With no failure to tolerate, the answer is each host's own room: one 512 MiB VM on each
  // host, 16 GiB of memory → 7 more of 2 GiB; 6 cores × 4 → 11 more of 2 vCPUs.
  const plain = hostCount * Math.min(Math.floor((memoryMiB - 512) / 2048), Math.floor((cores * 4 - 1) / 2));
  assert.equal(none.fits, plain, JSON.stringify(none));
  assert.ok(one.fits > 0, JSON.stringify(one));
  assert.ok(one.fits <= none.fits);
  assert.ok(one.fits < none.fits, 'a host of room is held back for failover');
  for (const a of [none, one])
    assert.equal(
      a.perHost.reduce((n, h) => n + h.count, 0),
      a.fits,
    );
  await removeAllVms();
});
