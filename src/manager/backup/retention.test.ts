import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import type { Retention } from '../../wire/api/backup-jobs.ts';
import { applyRetention, checkRetention, type RetainedBackup } from './retention.ts';

const at = (iso: string, extra: Partial<RetainedBackup> = {}): RetainedBackup => ({
  id: iso,
  createdAt: new Date(`${iso}Z`),
  ...extra,
});

/** The backups kept, oldest first, each with the rule that kept it. */
function kept(backups: RetainedBackup[], r: Retention): string[] {
  return applyRetention(backups, r, 'utc')
    .filter((m) => m.keep)
    .map((m) => `${m.backup.id} ${m.reason}`)
    .reverse();
}

function daily(from: string, to: string, time = '02:00:00'): RetainedBackup[] {
  const out: RetainedBackup[] = [];
  for (
    let d = new Date(`${from}T${time}Z`);
    d <= new Date(`${to}T${time}Z`);
    d = new Date(d.getTime() + 86_400_000)
  )
    out.push(at(d.toISOString().slice(0, 19)));
  return out;
}

test('keep-last keeps the newest N, whatever order they come in', () => {
  const list = [
    at('2026-03-01T01:00:00'),
    at('2026-03-03T01:00:00'),
    at('2026-03-02T01:00:00'),
    at('2026-03-04T01:00:00'),
  ];
  assert.deepEqual(kept(list, { 'keep-last': 2 }), [
    '2026-03-03T01:00:00 keep-last',
    '2026-03-04T01:00:00 keep-last',
  ]);
  const marks = applyRetention(list, { 'keep-last': 2 }, 'utc');
  assert.deepEqual(
    marks.map((m) => [m.backup.id.slice(0, 10), m.keep, m.reason]),
    [
      ['2026-03-04', true, 'keep-last'],
      ['2026-03-03', true, 'keep-last'],
      ['2026-03-02', false, null],
      ['2026-03-01', false, null],
    ],
  );
});

test('keep-daily keeps the newest backup of each of the N most recent days that have one', () => {
  const list = [
    at('2026-03-01T01:00:00'),
    at('2026-03-01T23:00:00'),
    // no backup on the 2nd … 4th: the rule counts days with a backup, not calendar days
    at('2026-03-05T08:00:00'),
    at('2026-03-05T20:00:00'),
    at('2026-03-06T03:00:00'),
  ];
  assert.deepEqual(kept(list, { 'keep-daily': 3 }), [
    '2026-03-01T23:00:00 keep-daily',
    '2026-03-05T20:00:00 keep-daily',
    '2026-03-06T03:00:00 keep-daily',
  ]);
});

test('a period a previous rule kept a backup in does not count against the next rule', () => {
  const list = [
    at('2026-03-08T10:00:00'),
    at('2026-03-09T10:00:00'),
    at('2026-03-10T08:00:00'),
    at('2026-03-10T12:00:00'),
  ];
  // keep-last keeps both backups of the 10th; keep-daily 2 then keeps the 9th and the 8th.
  assert.deepEqual(kept(list, { 'keep-last': 2, 'keep-daily': 2 }), [
    '2026-03-08T10:00:00 keep-daily',
    '2026-03-09T10:00:00 keep-daily',
    '2026-03-10T08:00:00 keep-last',
    '2026-03-10T12:00:00 keep-last',
  ]);
});

test('keep-hourly keeps the newest of each hour', () => {
  const list = [
    at('2026-03-10T10:00:00'),
    at('2026-03-10T10:15:00'),
    at('2026-03-10T10:45:00'),
    at('2026-03-10T11:15:00'),
    at('2026-03-10T12:00:00'),
    at('2026-03-10T12:30:00'),
  ];
  assert.deepEqual(kept(list, { 'keep-hourly': 2 }), [
    '2026-03-10T11:15:00 keep-hourly',
    '2026-03-10T12:30:00 keep-hourly',
  ]);
});

test('keep-weekly uses ISO weeks: Monday 2025-12-29 and Thursday 2026-01-01 are one week (2026-W01)', () => {
  const list = [
    at('2025-12-28T02:00:00'),
    at('2025-12-29T02:00:00'),
    at('2026-01-01T02:00:00'),
    at('2026-01-05T02:00:00'),
  ];
  assert.deepEqual(kept(list, { 'keep-weekly': 3 }), [
    '2025-12-28T02:00:00 keep-weekly',
    '2026-01-01T02:00:00 keep-weekly',
    '2026-01-05T02:00:00 keep-weekly',
  ]);
  // Friday 2027-01-01 belongs to 2026-W53, with Monday 2026-12-28.
  assert.deepEqual(
    kept([at('2026-12-28T02:00:00'), at('2027-01-01T02:00:00'), at('2027-01-04T02:00:00')], {
      'keep-weekly': 5,
    }),
    ['2027-01-01T02:00:00 keep-weekly', '2027-01-04T02:00:00 keep-weekly'],
  );
});

test('two years of daily backups under daily 7, weekly 4, monthly 6, yearly 2 keep 18, each for one reason', () => {
  // 2026-03-10 is a Tuesday: ISO week 11 holds the 9th and 10th, week 10 the 2nd to 8th.
  const list = daily('2024-01-01', '2026-03-10');
  const r = { 'keep-daily': 7, 'keep-weekly': 4, 'keep-monthly': 6, 'keep-yearly': 2 };
  assert.deepEqual(
    kept(list, r).map((s) => s.replace('T02:00:00', '')),
    [
      '2024-12-31 keep-yearly',
      '2025-08-31 keep-monthly',
      '2025-09-30 keep-monthly',
      '2025-10-31 keep-monthly',
      '2025-11-30 keep-monthly',
      '2025-12-31 keep-monthly',
      '2026-01-31 keep-monthly',
      '2026-02-08 keep-weekly',
      '2026-02-15 keep-weekly',
      '2026-02-22 keep-weekly',
      '2026-03-01 keep-weekly',
      '2026-03-04 keep-daily',
      '2026-03-05 keep-daily',
      '2026-03-06 keep-daily',
      '2026-03-07 keep-daily',
      '2026-03-08 keep-daily',
      '2026-03-09 keep-daily',
      '2026-03-10 keep-daily',
    ],
  );
  const marks = applyRetention(list, r, 'utc');
  assert.equal(marks.length, list.length);
  assert.equal(marks.filter((m) => !m.keep).length, list.length - 18);
  assert.ok(marks.every((m) => m.keep === (m.reason !== null)));
});

test('keep-yearly alone keeps the last backup of each year', () => {
  const list = daily('2023-12-30', '2025-01-02');
  assert.deepEqual(kept(list, { 'keep-yearly': 5 }), [
    '2023-12-31T02:00:00 keep-yearly',
    '2024-12-31T02:00:00 keep-yearly',
    '2025-01-02T02:00:00 keep-yearly',
  ]);
});

test('a protected backup is kept and counted by no rule', () => {
  const list = [
    at('2026-03-01T02:00:00'),
    at('2026-03-02T02:00:00', { protected: true }),
    at('2026-03-03T02:00:00'),
    at('2026-03-04T02:00:00'),
  ];
  assert.deepEqual(kept(list, { 'keep-last': 2 }), [
    '2026-03-02T02:00:00 protected',
    '2026-03-03T02:00:00 keep-last',
    '2026-03-04T02:00:00 keep-last',
  ]);
  // keep-daily 3 passes over the protected day: it keeps the 1st, 3rd and 4th.
  assert.deepEqual(kept(list, { 'keep-daily': 3 }), [
    '2026-03-01T02:00:00 keep-daily',
    '2026-03-02T02:00:00 protected',
    '2026-03-03T02:00:00 keep-daily',
    '2026-03-04T02:00:00 keep-daily',
  ]);
});

test('no rule (or only zeros) keeps everything; no backups keep nothing', () => {
  const list = daily('2026-03-01', '2026-03-05');
  for (const r of [{}, { 'keep-last': 0, 'keep-daily': 0 }]) {
    const marks = applyRetention(list, r, 'utc');
    assert.ok(marks.every((m) => m.keep && m.reason === 'keep-all'));
  }
  assert.deepEqual(applyRetention([], { 'keep-last': 3 }), []);
});

test('periods are read in local time: a backup at 23:30 UTC belongs to the next day in Berlin', () => {
  const saved = process.env.TZ;
  process.env.TZ = 'Europe/Berlin';
  try {
    const list = [at('2026-03-09T23:30:00'), at('2026-03-10T10:00:00')];
    // Both are on the 10th in Berlin: one day, so only the newer stays.
    const marks = applyRetention(list, { 'keep-daily': 2 }, 'local');
    assert.deepEqual(
      marks.map((m) => m.keep),
      [true, false],
    );
    assert.deepEqual(
      applyRetention(list, { 'keep-daily': 2 }, 'utc').map((m) => m.keep),
      [true, true],
    );
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
});

test('a policy from outside is checked: known rules, whole counts in range, zeros dropped', () => {
  assert.deepEqual(checkRetention({ 'keep-last': 3, 'keep-daily': 0 }), { 'keep-last': 3 });
  for (const [bad, why] of [
    [{ 'keep-fortnightly': 1 }, /unknown retention rule "keep-fortnightly"/],
    [{ 'keep-last': -1 }, /whole number/],
    [{ 'keep-last': 1.5 }, /whole number/],
    [{ 'keep-last': '3' }, /whole number/],
    [{ 'keep-last': 1e9 }, /whole number from 0 to 100000/],
  ] as const)
    assert.throws(
      () => checkRetention(bad),
      (e: unknown) => e instanceof TernError && e.code === 'invalid_request' && why.test(e.message),
    );
});
