import assert from 'node:assert/strict';
import { test } from 'node:test';
import { durationText } from '../../wire/api/replication.ts';
import { appConsistentPeriodOf, freezeDue, intervalOf, parseDuration, pointPeriodMs } from './intervals.ts';

test('the usual intervals read as seconds, and spell back the same', () => {
  assert.equal(intervalOf('30s'), 30);
  assert.equal(intervalOf('5m'), 300);
  assert.equal(intervalOf('15m'), 900);
  assert.equal(intervalOf('24h'), 86400);
  for (const t of ['30s', '5m', '15m', '4h', '90s']) assert.equal(durationText(parseDuration(t, 'x')), t);
});

test('an interval below 30 s, past a day, or not a duration is refused with a clear message', () => {
  assert.throws(() => intervalOf('29s'), /from 30s to 24h/);
  assert.throws(() => intervalOf('25h'), /from 30s to 24h/);
  assert.throws(() => intervalOf('0'), /from 30s to 24h/);
  assert.throws(() => intervalOf('5 min'), /not a duration like 30s/);
  assert.throws(() => intervalOf('1d'), /not a duration/);
});

test('application-consistent points: never (0), not more often than the cycles, at least weekly', () => {
  assert.equal(appConsistentPeriodOf('0', 30), 0);
  assert.equal(appConsistentPeriodOf('4h', 30), 14400);
  assert.throws(() => appConsistentPeriodOf('1m', 300), /more often than the cycles \(every 5m\)/);
  assert.throws(() => appConsistentPeriodOf('200h', 300), /once a week/);
});

test('older points are kept per application-consistent period, hourly without one', () => {
  assert.equal(pointPeriodMs(0), 3_600_000);
  assert.equal(pointPeriodMs(14400), 14_400_000);
});

test('a cycle freezes when no application-consistent point is as recent as the period', () => {
  const h = 3_600_000;
  assert.equal(freezeDue(0, null, 10 * h), false);
  assert.equal(freezeDue(4 * 3600, null, 10 * h), true);
  assert.equal(freezeDue(4 * 3600, 7 * h, 10 * h), false);
  assert.equal(freezeDue(4 * 3600, 6 * h, 10 * h), true);
});
