import assert from 'node:assert/strict';
import { test } from 'node:test';
import { watchRpo } from './rpo.ts';

const now = Date.UTC(2026, 11, 7, 12, 0, 0);
const S = 1000;
const base = { interval: 30 * S, since: now - 3_600_000, cycleStartedAt: null, now };

test('within the interval is ok, past it late, past twice it an alert naming the figures', () => {
  assert.equal(watchRpo({ ...base, newestPoint: now - 20 * S }).state, 'ok');
  const late = watchRpo({ ...base, newestPoint: now - 45 * S });
  assert.deepEqual([late.state, late.lag, late.nextCycleAt], ['late', 45 * S, now]);
  const alert = watchRpo({ ...base, newestPoint: now - 61 * S });
  assert.equal(alert.state, 'alert');
  assert.match(alert.why, /trails by 61 s, more than twice the 30 s promised/);
  assert.equal(
    watchRpo({ ...base, newestPoint: now - 60 * S }).state,
    'late',
    'twice the interval exactly is not yet broken',
  );
});

test('the next cycle is paced from the newest point, never in the past, and none is due while one runs', () => {
  assert.equal(watchRpo({ ...base, newestPoint: now - 10 * S }).nextCycleAt, now + 20 * S);
  assert.equal(watchRpo({ ...base, newestPoint: now - 50 * S }).nextCycleAt, now);
  assert.equal(
    watchRpo({ ...base, newestPoint: now - 10 * S, cycleStartedAt: now - 2 * S }).nextCycleAt,
    null,
  );
});

test('before the first point: initial while the copy runs, an alert after a day', () => {
  const first = watchRpo({ ...base, newestPoint: null, cycleStartedAt: now - 600 * S });
  assert.deepEqual([first.state, first.lag, first.nextCycleAt], ['initial', null, null]);
  const stuck = watchRpo({ ...base, since: now - 25 * 3_600_000, newestPoint: null });
  assert.equal(stuck.state, 'alert');
  assert.match(stuck.why, /no recovery point after 25 h/);
  assert.throws(() => watchRpo({ ...base, interval: 0, newestPoint: now }), /positive/);
});
