import assert from 'node:assert/strict';
import { test } from 'node:test';
import { demandOf } from './filters.ts';
import { placementHost } from './fixtures.ts';
import { defaultPolicy, type PlacementHost, type PlacementPolicy, type VmDemand } from './model.ts';
import { headroom, preferred, rating } from './rating.ts';

const GiB = 1024 ** 3;

const host = (name: string, over: Partial<PlacementHost> = {}): PlacementHost =>
  placementHost(name, {
    id: `id-${name}`,
    cores: 10,
    memoryMiB: 10000,
    pools: [{ name: 'local', shared: false, freeBytes: 100 * GiB, sizeBytes: 200 * GiB }],
    ...over,
  });

const vm: VmDemand = {
  vcpus: 4,
  memoryMiB: 1000,
  diskBytes: 20 * GiB,
  pools: ['local'],
  cpu: { mode: 'host' },
  groups: [],
};

const rate = (h: PlacementHost, policy: PlacementPolicy = defaultPolicy, v = vm) =>
  rating(h, demandOf([h], v, policy));

test('headroom is the weighted mean of memory, CPU and storage left after placing the VM', () => {
  const h = host('a', { allocated: { vcpus: 16, memoryMiB: 4000 } });
  // memory (10000 − 4000 − 1000) / 10000 = 0.5; cpu (40 − 16 − 4) / 40 = 0.5; storage (100 − 20) / 200 = 0.4
  const expected = (3 * 0.5 + 2 * 0.5 + 1 * 0.4) / 6;
  assert.ok(Math.abs(headroom(h, demandOf([h], vm, defaultPolicy)) - expected) < 1e-12);
  assert.ok(Math.abs(rate(h) - expected) < 1e-12);
  // A host in use: pack rates it above every empty host, fuller first.
  assert.ok(Math.abs(rate(h, { ...defaultPolicy, strategy: 'pack' }) - (0.5 + 0.5 * (1 - expected))) < 1e-12);
});

test('pack keeps to the hosts in use, and opens the roomiest empty host when none fits', () => {
  const pack = { ...defaultPolicy, strategy: 'pack' as const };
  const small = host('small', { memoryMiB: 4000 });
  const big = host('big', { memoryMiB: 40_000 });
  const used = host('used', { memoryMiB: 40_000, allocated: { vcpus: 1, memoryMiB: 1000 } });
  // The host in use wins even though the VM would fill more of the small empty one.
  assert.ok(rate(used, pack) > rate(small, pack));
  assert.ok(rate(used, pack) > rate(big, pack));
  // Between empty hosts, the one with the most room.
  assert.ok(rate(big, pack) > rate(small, pack));
});

test('without a pool size, storage headroom is rated against what is free; with no pool it is neutral', () => {
  const h = host('a', { pools: [{ name: 'local', shared: false, freeBytes: 100 * GiB }] });
  const weights = { memory: 0, cpu: 0, storage: 1 };
  assert.ok(Math.abs(rate(h, { ...defaultPolicy, weights }) - 0.8) < 1e-12);
  assert.equal(rate(h, { ...defaultPolicy, weights }, { ...vm, pools: [] }), 1);
});

test('ratings stay in [0, 1] even on an over-committed host', () => {
  const h = host('a', { allocated: { vcpus: 100, memoryMiB: 20000 } });
  for (const strategy of ['spread', 'pack'] as const) {
    const r = rate(h, { ...defaultPolicy, strategy });
    assert.ok(r >= 0 && r <= 1, `${strategy}: ${r}`);
  }
});

test('spread prefers the emptier host, pack the fuller one that still fits', () => {
  const empty = host('empty');
  const busy = host('busy', { allocated: { vcpus: 30, memoryMiB: 8000 } });
  assert.ok(rate(empty) > rate(busy));
  const pack = { ...defaultPolicy, strategy: 'pack' as const };
  assert.ok(rate(busy, pack) > rate(empty, pack));
});

test('weights decide which dimension matters', () => {
  const cpuBusy = host('c', { allocated: { vcpus: 30, memoryMiB: 0 } });
  const memBusy = host('m', { allocated: { vcpus: 0, memoryMiB: 7000 } });
  const memoryFirst = { ...defaultPolicy, weights: { memory: 1, cpu: 0, storage: 0 } };
  const cpuFirst = { ...defaultPolicy, weights: { memory: 0, cpu: 1, storage: 0 } };
  assert.ok(rate(cpuBusy, memoryFirst) > rate(memBusy, memoryFirst));
  assert.ok(rate(memBusy, cpuFirst) > rate(cpuBusy, cpuFirst));
});

test('ties go to the host name, then the id, so the choice is deterministic', () => {
  const a = host('alpha');
  const b = host('beta');
  assert.equal(preferred(0.5, a, 0.5, b), true);
  assert.equal(preferred(0.5, b, 0.5, a), false);
  assert.equal(preferred(0.6, b, 0.5, a), true);
  assert.equal(preferred(0.5, { ...a, id: 'x-1' }, 0.5, { ...a, id: 'x-2' }), true);
});
