import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  chainLength,
  markTest,
  type PoolState,
  type PoolVm,
  planNewVersion,
  promote,
  refuseDelete,
  rollback,
  rollingPlan,
} from './versions.ts';

const pool = (over: Partial<PoolState> = {}): PoolState => ({
  name: 'desk',
  versions: [
    { number: 1, parent: null, state: 'retired' },
    { number: 2, parent: 1, state: 'production' },
  ],
  production: 2,
  previous: 1,
  maxUnavailablePercent: 20,
  chainLimit: 5,
  ...over,
});

const vms = (n: number, version: number): PoolVm[] =>
  Array.from({ length: n }, (_, i) => ({
    name: `desk-${String(i + 1).padStart(2, '0')}`,
    version,
    running: true,
  }));

test('a rolling reboot keeps at most 20% unavailable and skips VMs already moved', () => {
  const plan = rollingPlan(vms(10, 2), 3, 20);
  assert.deepEqual(
    plan.map((b) => b.length),
    [2, 2, 2, 2, 2],
  );
  assert.equal(rollingPlan(vms(3, 2), 3, 20)[0].length, 1, 'at least one at a time');
  const mixed = [...vms(2, 3), { name: 'desk-99', version: 2, running: false }];
  assert.deepEqual(
    rollingPlan(mixed, 3, 50)
      .flat()
      .map((v) => v.name),
    ['desk-99'],
  );
  assert.throws(() => rollingPlan(vms(2, 2), 3, 0), /between 1 and 100/);
});

test('versions go maintenance, test, production; rollback returns to the previous one', () => {
  const next = planNewVersion(pool());
  assert.deepEqual(next, { number: 3, parent: 2, flattenFirst: false });
  const p = pool({ versions: [...pool().versions, { number: 3, parent: 2, state: 'maintenance' }] });
  assert.throws(() => planNewVersion(p), /already has a version in maintenance/);
  assert.throws(() => promote(p, 3), /only a tested version/);
  assert.throws(() => markTest(p, 3, true), /shut down/);
  assert.equal(markTest(p, 3, false).state, 'test');
  const tested = pool({ versions: [...pool().versions, { number: 3, parent: 2, state: 'test' }] });
  assert.deepEqual(promote(tested, 3), { production: 3, previous: 2 });
  assert.deepEqual(rollback({ ...tested, production: 3, previous: 2 }), { production: 2, previous: 3 });
  assert.throws(() => rollback(pool({ previous: null })), /no earlier version/);
});

test('a chain past its limit is flattened before the next version', () => {
  const versions = [1, 2, 3, 4, 5].map((n) => ({
    number: n,
    parent: n === 1 ? null : n - 1,
    state: n === 5 ? ('production' as const) : ('retired' as const),
  }));
  const p = pool({ versions, production: 5, previous: 4 });
  assert.equal(chainLength(p, 5), 5);
  assert.deepEqual(planNewVersion(p), { number: 6, parent: 5, flattenFirst: true });
  assert.equal(planNewVersion({ ...p, chainLimit: 6 }).flattenFirst, false);
});

test('a version in use cannot be deleted, and says by what', () => {
  const p = pool({
    versions: [...pool().versions, { number: 3, parent: 2, state: 'test' }],
  });
  assert.throws(() => refuseDelete(p, 2, []), /in production/);
  assert.throws(() => refuseDelete(p, 1, []), /rollback target/);
  assert.throws(
    () => refuseDelete(p, 3, [{ name: 'desk-01', version: 3, running: true }]),
    /in use by desk-01/,
  );
  assert.doesNotThrow(() => refuseDelete(p, 3, []));
  assert.throws(() => refuseDelete({ ...p, previous: null }, 1, []), /base of version\(s\) 2/);
});
