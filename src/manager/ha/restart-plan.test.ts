import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultVmHaPolicy, type VmHaPolicy } from '../../wire/ha.ts';
import { placementHost, vmDemand } from '../placement/fixtures.ts';
import type { PlacementHost, VmDemand } from '../placement/model.ts';
import { type HaVm, planRestarts, type RestartRequest, retryDelayMs, waves } from './restart-plan.ts';

const GiB = 1024 ** 3;

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, { pools: [{ name: 'san', shared: true, freeBytes: 1000 * GiB }], ...over });

const demand = (memoryMiB: number, over: Partial<VmDemand> = {}): VmDemand =>
  vmDemand({ vcpus: 1, memoryMiB, ...over });

const vm = (vmId: string, policy: Partial<VmHaPolicy>, memoryMiB = 2048, over: Partial<HaVm> = {}): HaVm => ({
  vmId,
  hostId: 'dead',
  policy: { ...defaultVmHaPolicy, restart: 'restart', ...policy },
  demand: demand(memoryMiB),
  ...over,
});

const plan = (vms: HaVm[], survivors: PlacementHost[], over: Partial<RestartRequest> = {}) =>
  planRestarts({ failedHostIds: ['dead'], vms, survivors, atMs: 1000, ...over });

test('protected before best-effort before none; then priority, then order', () => {
  const steps = plan(
    [
      vm('none', { restart: 'none', priority: 'high' }),
      vm('be-high', { restart: 'best-effort', priority: 'high', order: 0 }),
      vm('low', { priority: 'low', order: 0 }),
      vm('med-2', { priority: 'medium', order: 2 }),
      vm('high', { priority: 'high', order: 50 }),
      vm('med-1', { priority: 'medium', order: 1 }),
    ],
    [host('a'), host('b'), host('c')],
  );
  assert.deepEqual(
    steps.map((s) => s.vmId),
    ['high', 'med-1', 'med-2', 'low', 'be-high', 'none'],
  );
  assert.ok(steps.slice(0, 5).every((s) => s.hostId !== null));
  assert.equal(steps[5].hostId, null);
  assert.equal(steps[5].reason, 'restart policy is none');
  assert.equal(steps[5].restart, 'none');
});

test('each placement is counted before the next: spread over the survivors', () => {
  const steps = plan(
    [vm('v1', {}), vm('v2', {}), vm('v3', {}), vm('v4', {})],
    [host('a'), host('b', { allocated: { vcpus: 1, memoryMiB: 2048 } })],
  );
  assert.deepEqual(
    steps.map((s) => s.hostId),
    ['a', 'a', 'b', 'a'],
  );
});

test('capacity exhausted: the low-priority VMs are left unplaced with the reason', () => {
  // Two survivors with 4 GiB free each take four 2 GiB VMs; the two low ones find no room.
  const full = { allocated: { vcpus: 2, memoryMiB: 4096 } };
  const steps = plan(
    [
      vm('low-1', { priority: 'low' }),
      vm('high-1', { priority: 'high' }),
      vm('med-1', { priority: 'medium' }),
      vm('low-2', { priority: 'low' }),
      vm('high-2', { priority: 'high' }),
      vm('med-2', { priority: 'medium' }),
    ],
    [host('a', full), host('b', full)],
  );
  const placed = steps.filter((s) => s.hostId !== null).map((s) => s.vmId);
  assert.deepEqual(placed, ['high-1', 'high-2', 'med-1', 'med-2']);
  const unplaced = steps.filter((s) => s.hostId === null);
  assert.deepEqual(
    unplaced.map((s) => s.vmId),
    ['low-1', 'low-2'],
  );
  for (const s of unplaced)
    assert.match(s.reason ?? '', /^no host fits \(needs 1 vCPUs, 2048 MiB\).*2 by capacity/);
});

test('anti-affinity holds among the restarted VMs and with the VMs already on survivors', () => {
  const apart = [{ name: 'db', kind: 'anti-affinity' as const }];
  const steps = plan(
    [
      vm('db1', {}, 1024, { demand: demand(1024, { groups: apart }) }),
      vm('db2', {}, 1024, { demand: demand(1024, { groups: apart }) }),
      vm('db3', {}, 1024, { demand: demand(1024, { groups: apart }) }),
    ],
    [host('a'), host('b'), host('c', { groups: new Map([['db', 1]]) })],
  );
  assert.equal(steps[0].hostId === steps[1].hostId, false);
  assert.ok(steps.slice(0, 2).every((s) => s.hostId !== 'c'));
  assert.equal(steps[2].hostId, null);
  assert.match(steps[2].reason ?? '', /3 by anti-affinity/);
});

test('affinity: the second member follows the first', () => {
  const together = [{ name: 'app', kind: 'affinity' as const }];
  const steps = plan(
    [
      vm('web', { order: 1 }, 1024, { demand: demand(1024, { groups: together }) }),
      vm('cache', { order: 2 }, 1024, { demand: demand(1024, { groups: together }) }),
    ],
    [host('a'), host('b', { allocated: { vcpus: 0, memoryMiB: 1024 } })],
  );
  assert.equal(steps[0].hostId, 'a');
  assert.equal(steps[1].hostId, 'a');
});

test('best-effort VMs restart only in the room the protected ones left', () => {
  // Alone, be-1 (high) would go first anywhere; after the two protected ones, 2 GiB are left per host.
  const steps = plan(
    [
      vm('be-1', { restart: 'best-effort', priority: 'high' }, 4096),
      vm('p-1', { priority: 'low' }, 6144),
      vm('p-2', { priority: 'low' }, 6144),
      vm('be-2', { restart: 'best-effort', priority: 'high' }, 2048),
    ],
    [host('a'), host('b')],
  );
  const by = new Map(steps.map((s) => [s.vmId, s]));
  assert.deepEqual([by.get('p-1')?.hostId, by.get('p-2')?.hostId].sort(), ['a', 'b']);
  assert.equal(by.get('be-1')?.hostId, null);
  assert.match(by.get('be-1')?.reason ?? '', /^best effort, no room left: no host fits/);
  assert.notEqual(by.get('be-2')?.hostId, null);
});

test('delays accumulate along the order; a VM not restarted adds none', () => {
  const steps = plan(
    [
      vm('first', { order: 1, delayS: 0 }),
      vm('second', { order: 2, delayS: 10 }),
      vm('huge', { order: 3, delayS: 60 }, 100_000),
      vm('third', { order: 4, delayS: 5 }),
    ],
    [host('a'), host('b')],
  );
  assert.deepEqual(
    steps.map((s) => [s.vmId, s.notBeforeMs]),
    [
      ['first', 1000],
      ['second', 11_000],
      ['huge', 71_000],
      ['third', 16_000],
    ],
  );
  assert.equal(steps[2].hostId, null);
});

test('only VMs of the failed hosts; failed hosts never take one; input left untouched', () => {
  const survivors = [host('a'), host('dead'), host('b')];
  const frozen = JSON.stringify(survivors.map((h) => ({ ...h, groups: [...h.groups] })));
  const steps = plan(
    [
      vm('v1', {}),
      vm('elsewhere', {}, 2048, { hostId: 'a' }),
      vm('v2', {}, 2048, { demand: demand(2048, { groups: [{ name: 'g', kind: 'anti-affinity' }] }) }),
    ],
    survivors,
  );
  assert.deepEqual(
    steps.map((s) => s.vmId),
    ['v1', 'v2'],
  );
  assert.ok(steps.every((s) => s.hostId !== 'dead' && s.fromHostId === 'dead'));
  assert.equal(JSON.stringify(survivors.map((h) => ({ ...h, groups: [...h.groups] }))), frozen);
});

test('new disk bytes in a shared pool are one budget across the survivors', () => {
  const pools = [{ name: 'san', shared: true, freeBytes: 30 * GiB }];
  const withDisk = (id: string) => vm(id, {}, 1024, { demand: demand(1024, { diskBytes: 20 * GiB }) });
  const steps = plan([withDisk('d1'), withDisk('d2')], [host('a', { pools }), host('b', { pools })]);
  assert.notEqual(steps[0].hostId, null);
  assert.equal(steps[1].hostId, null);
  assert.match(steps[1].reason ?? '', /by capacity/);
});

test('retry backoff doubles from 5 s up to 5 minutes', () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6, 7, 8].map((a) => retryDelayMs(a)),
    [5000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000],
  );
  assert.equal(retryDelayMs(0), 5000);
  assert.equal(retryDelayMs(10_000), 300_000);
  assert.equal(retryDelayMs(3, 1000, 3000), 3000);
});

test('waves: steps of one policy, priority and order start together, in plan order', () => {
  const vms = [
    vm('h1', { priority: 'high', order: 0 }),
    vm('h2', { priority: 'high', order: 0 }),
    vm('h3', { priority: 'high', order: 5 }),
    vm('m1', { priority: 'medium', order: 0 }),
    vm('m2', { priority: 'medium', order: 0 }),
    vm('be', { restart: 'best-effort', priority: 'medium', order: 0 }),
  ];
  const steps = plan(vms, [host('a'), host('b'), host('c')]);
  const policyOf = (id: string) => vms.find((v) => v.vmId === id)!.policy;
  assert.deepEqual(
    waves(steps, policyOf).map((w) => w.map((s) => s.vmId)),
    [['h1', 'h2'], ['h3'], ['m1', 'm2'], ['be']],
  );
  assert.deepEqual(waves([], policyOf), []);
});
