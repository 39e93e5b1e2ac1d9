import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultVmHaPolicy, type RestartPolicy } from '../../wire/ha.ts';
import { placementHost } from '../placement/fixtures.ts';
import type { PlacementHost } from '../placement/model.ts';
import { admit, type HaPlanInput, haPlan, tolerance } from './admission.ts';
import type { HaVm } from './restart-plan.ts';

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, { ...over });

let serial = 0;
const vm = (hostId: string, memoryMiB = 2048, restart: RestartPolicy = 'restart'): HaVm => ({
  vmId: `vm-${++serial}`,
  hostId,
  policy: { ...defaultVmHaPolicy, restart },
  demand: { vcpus: 1, memoryMiB, diskBytes: 0, pools: ['san'], cpu: { mode: 'host' }, groups: [] },
});
const vms = (hostId: string, n: number, memoryMiB = 2048) =>
  Array.from({ length: n }, () => vm(hostId, memoryMiB));

const three = () => [host('a'), host('b'), host('c')];
const input = (v: HaVm[], over: Partial<HaPlanInput> = {}): HaPlanInput => ({
  hosts: three(),
  vms: v,
  failuresToTolerate: 1,
  ...over,
});

test('3 hosts of 8 GiB at N+1: 3 + 3 + 2 protected 2 GiB VMs fit', () => {
  // Losing a (or b) puts 3 VMs into 2 + 4 GiB free; losing c puts 2 into 2 + 2.
  const p = haPlan(input([...vms('a', 3), ...vms('b', 3), ...vms('c', 2)]));
  assert.equal(p.tolerates, 1);
  assert.equal(p.ok, true);
  assert.equal(p.checked, 'every failure set');
  assert.match(p.limitedBy ?? '', /would lack room to restart/);
  assert.equal(p.summary, 'tolerates 1 host failure (1 required)');
  // The plan is for the host holding the most protected memory (a and b tie: a by name).
  assert.deepEqual(p.failureSet, ['a']);
  assert.equal(p.plan.length, 3);
  assert.ok(p.plan.every((s) => s.fromHostId === 'a' && s.hostId !== null && s.hostId !== 'a'));
  assert.deepEqual(p.plan.map((s) => s.hostId).sort(), ['b', 'c', 'c']);
});

test('3 + 3 + 3 does not: tolerates 0, and the plan shows the VM left without room', () => {
  const p = haPlan(input([...vms('a', 3), ...vms('b', 3), ...vms('c', 3)]));
  assert.equal(p.tolerates, 0);
  assert.equal(p.ok, false);
  assert.equal(p.checked, 'none');
  assert.match(p.summary, /^tolerates 0 host failures, fewer than the 1 required: protected VMs of \w/);
  const unplaced = p.plan.filter((s) => s.hostId === null);
  assert.equal(unplaced.length, 1);
  assert.match(unplaced[0].reason ?? '', /^no host fits/);
});

test('adding one more protected VM breaks the plan; admission says so', () => {
  const now = input([...vms('a', 3), ...vms('b', 3), ...vms('c', 2)]);
  const r = admit(vm('c'), 'c', now);
  assert.equal(r.admitted, false);
  assert.equal(r.before, 1);
  assert.equal(r.after, 0);
  assert.match(r.reason, /^on c it leaves room for 0 host failures, fewer than the 1 required: /);
  // An unprotected VM of that size takes the same room and breaks it too.
  assert.equal(admit(vm('c', 2048, 'best-effort'), 'c', now).admitted, false);
});

test('one that still fits is admitted', () => {
  const now = input([...vms('a', 3), ...vms('b', 3), ...vms('c', 1)]);
  const r = admit(vm('c'), 'c', now);
  assert.deepEqual(
    { admitted: r.admitted, before: r.before, after: r.after },
    { admitted: true, before: 1, after: 1 },
  );
  assert.equal(r.reason, 'the cluster still tolerates 1 host failure with it (1 required)');
});

test('a cluster already short refuses more, saying it was short before', () => {
  const r = admit(vm('a', 512), 'a', input([...vms('a', 3), ...vms('b', 3), ...vms('c', 3)]));
  assert.equal(r.admitted, false);
  assert.match(r.reason, /^the cluster already tolerates only 0 host failures of the 1 required/);
});

test('admission to a host that is not online is refused', () => {
  const hosts = [host('a'), host('b'), host('c', { state: 'maintenance' })];
  const r = admit(vm('c'), 'c', input([], { hosts }));
  assert.equal(r.admitted, false);
  assert.equal(r.reason, 'host c is not online');
});

test('the host counts: allocated beyond the listed VMs takes room', () => {
  // c's own count says it is nearly full though no VM is listed there.
  const hosts = [host('a'), host('b'), host('c', { allocated: { vcpus: 4, memoryMiB: 7168 } })];
  const p = tolerance(input([...vms('a', 3), ...vms('b', 1)], { hosts }));
  // Losing a: 3 VMs into b (6 GiB free) and c (1 GiB free): fits; losing b: fits; tolerates 1.
  assert.equal(p.tolerates, 1);
  const full = [host('a'), host('b'), host('c', { allocated: { vcpus: 4, memoryMiB: 8192 } })];
  assert.equal(tolerance(input([...vms('a', 3), ...vms('b', 2)], { hosts: full })).tolerates, 0);
});

test('N+2 and beyond: counts up to the last host', () => {
  const hosts = [host('a'), host('b'), host('c'), host('d')];
  const v = [vm('a'), vm('b'), vm('c'), vm('d')];
  const p = haPlan(input(v, { hosts, failuresToTolerate: 2 }));
  assert.equal(p.tolerates, 3);
  assert.equal(p.ok, true);
  assert.equal(p.limitedBy, 'with 4 online hosts, 4 host failures leave none to restart on');
  assert.equal(p.failureSet.length, 2);
  assert.equal(p.plan.length, 2);
  assert.equal(haPlan(input(v, { hosts, failuresToTolerate: 4 })).ok, false);
});

test('no protected VM: every failure is tolerated; unprotected ones are in the plan only as such', () => {
  const p = haPlan(input([vm('a', 2048, 'none'), vm('a', 2048, 'best-effort')]));
  assert.equal(p.tolerates, 3);
  assert.equal(p.ok, true);
  assert.deepEqual(
    p.plan.map((s) => [s.restart, s.hostId === null]),
    [
      ['best-effort', false],
      ['none', true],
    ],
  );
});

test('hosts not online neither fail nor take restarts; their VMs are not running', () => {
  const hosts = [host('a'), host('b'), host('c', { state: 'offline' })];
  const p = haPlan(input([...vms('a', 2), ...vms('c', 4)], { hosts }));
  assert.equal(p.tolerates, 1);
  assert.deepEqual(p.failureSet, ['a']);
  assert.ok(p.plan.every((s) => s.hostId === 'b'));
});

test('beyond the failure-set budget the bound answers, and says so', () => {
  const p = tolerance(input([...vms('a', 1), ...vms('b', 1)], { failureSetBudget: 2 }));
  assert.equal(p.checked, 'bound');
  assert.equal(p.tolerates, 2);
});

test('tolerance counts capacity only; the plan also keeps placement rules and shows what they strand', () => {
  const apart = [{ name: 'db', kind: 'anti-affinity' as const }];
  const member = (hostId: string): HaVm => {
    const v = vm(hostId);
    return { ...v, demand: { ...v.demand, groups: apart } };
  };
  const groups = () => new Map([['db', 1]]);
  const hosts = [
    host('a', { groups: groups() }),
    host('b', { groups: groups() }),
    host('c', { groups: groups() }),
  ];
  const p = haPlan(input([member('a'), member('b'), member('c')], { hosts }));
  assert.equal(p.tolerates, 2);
  assert.equal(p.plan.length, 1);
  assert.equal(p.plan[0].hostId, null);
  assert.match(p.plan[0].reason ?? '', /2 by anti-affinity/);
});
