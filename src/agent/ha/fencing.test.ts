import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideFencing } from './fencing.ts';

// timeoutS 30, a heartbeat counts as lost after 10 s.
const at = (nowMs: number, leaseOkAtMs: number, managerOkAtMs: number) =>
  decideFencing({ nowMs, leaseOkAtMs, managerOkAtMs, timeoutS: 30, silentAfterMs: 10_000 });

test('both heartbeats fresh: ok, and the watchdog is fed with the time left', () => {
  assert.deepEqual(at(100_000, 99_000, 98_000), { state: 'ok', remainingMs: 29_000, feedWatchdog: true });
});

test('manager unreachable while the lease renews: isolated, the VMs stay', () => {
  const d = at(100_000, 99_000, 50_000);
  assert.deepEqual(d, { state: 'isolated', remainingMs: 29_000, feedWatchdog: true });
  // However long the manager stays away, a renewing lease never fences.
  assert.equal(at(10_000_000, 9_999_000, 0).state, 'isolated');
});

test('lease failing while the manager answers: storage-lost, the VMs stay', () => {
  assert.deepEqual(at(100_000, 50_000, 99_500), {
    state: 'storage-lost',
    remainingMs: 29_500,
    feedWatchdog: true,
  });
  assert.equal(at(10_000_000, 0, 9_999_000).state, 'storage-lost');
});

test('both lost, fence not yet due: the deadline counts from the later of the two', () => {
  assert.deepEqual(at(100_000, 80_000, 85_000), {
    state: 'both-lost',
    remainingMs: 15_000,
    feedWatchdog: true,
  });
});

test('fencing is due exactly timeoutS after the last heartbeat of either kind', () => {
  assert.deepEqual(at(114_999, 80_000, 85_000), { state: 'both-lost', remainingMs: 1, feedWatchdog: true });
  assert.deepEqual(at(115_000, 80_000, 85_000), { state: 'fence', remainingMs: 0, feedWatchdog: false });
  assert.deepEqual(at(500_000, 80_000, 85_000), { state: 'fence', remainingMs: 0, feedWatchdog: false });
});

test('the silence threshold is a boundary too, and never beyond timeoutS', () => {
  assert.equal(at(110_000, 100_000, 110_000).state, 'ok');
  assert.equal(at(110_001, 100_000, 110_001).state, 'storage-lost');
  // Default: half of timeoutS.
  const d = (now: number) => decideFencing({ nowMs: now, leaseOkAtMs: 0, managerOkAtMs: now, timeoutS: 10 });
  assert.equal(d(5_000).state, 'ok');
  assert.equal(d(5_001).state, 'storage-lost');
  // A threshold beyond timeoutS does not delay the fence.
  const big = decideFencing({
    nowMs: 9_000,
    leaseOkAtMs: 0,
    managerOkAtMs: 0,
    timeoutS: 10,
    silentAfterMs: 60_000,
  });
  assert.equal(big.state, 'ok');
  const due = decideFencing({
    nowMs: 10_000,
    leaseOkAtMs: 0,
    managerOkAtMs: 0,
    timeoutS: 10,
    silentAfterMs: 60_000,
  });
  assert.equal(due.state, 'fence');
});
