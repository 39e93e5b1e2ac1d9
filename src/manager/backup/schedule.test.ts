import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { nextRun, nextRuns, parseSchedule } from './schedule.ts';

const utc = (s: string) => new Date(`${s}Z`);
const next = (schedule: string, after: string) =>
  nextRun(parseSchedule(schedule), utc(after), 'utc')?.toISOString().replace('.000Z', '');
const runs = (schedule: string, after: string, n: number) =>
  nextRuns(parseSchedule(schedule), utc(after), n, 'utc').map((d) => d.toISOString().slice(0, 16));

test('daily 02:00 runs at 02:00 the same day when before it, else the next day', () => {
  assert.equal(next('daily 02:00', '2026-03-10T01:59:59'), '2026-03-10T02:00:00');
  assert.equal(next('daily 02:00', '2026-03-10T02:00:00'), '2026-03-11T02:00:00');
  assert.equal(next('daily 02:00', '2026-12-31T23:00:00'), '2027-01-01T02:00:00');
  assert.equal(next('daily', '2026-03-10T12:00:00'), '2026-03-11T00:00:00');
});

test('hourly runs on the hour; minutely every minute', () => {
  assert.deepEqual(runs('hourly', '2026-03-10T22:30:00', 3), [
    '2026-03-10T23:00',
    '2026-03-11T00:00',
    '2026-03-11T01:00',
  ]);
  assert.deepEqual(runs('minutely', '2026-03-10T23:59:30', 2), ['2026-03-11T00:00', '2026-03-11T00:01']);
});

test('mon..fri 22:30 skips the weekend', () => {
  // 2026-03-13 is a Friday.
  assert.deepEqual(runs('mon..fri 22:30', '2026-03-13T12:00:00', 3), [
    '2026-03-13T22:30',
    '2026-03-16T22:30',
    '2026-03-17T22:30',
  ]);
});

test('weekday lists, full names and ranges over the weekend', () => {
  assert.deepEqual(runs('sat,sun 03:00', '2026-03-13T12:00:00', 3), [
    '2026-03-14T03:00',
    '2026-03-15T03:00',
    '2026-03-21T03:00',
  ]);
  assert.deepEqual(runs('fri..mon 01:00', '2026-03-12T12:00:00', 5), [
    '2026-03-13T01:00',
    '2026-03-14T01:00',
    '2026-03-15T01:00',
    '2026-03-16T01:00',
    '2026-03-20T01:00',
  ]);
  assert.equal(next('Wednesday 05:00', '2026-03-12T00:00:00'), '2026-03-18T05:00:00');
  assert.equal(next('weekly', '2026-03-12T00:00:00'), '2026-03-16T00:00:00');
});

test('every 15m is clock-aligned; every 2h runs at even hours', () => {
  assert.deepEqual(runs('every 15m', '2026-03-10T10:07:00', 4), [
    '2026-03-10T10:15',
    '2026-03-10T10:30',
    '2026-03-10T10:45',
    '2026-03-10T11:00',
  ]);
  assert.deepEqual(runs('every 2h', '2026-03-10T23:00:00', 2), ['2026-03-11T00:00', '2026-03-11T02:00']);
  assert.deepEqual(runs('*:0/20', '2026-03-10T10:00:00', 3), [
    '2026-03-10T10:20',
    '2026-03-10T10:40',
    '2026-03-10T11:00',
  ]);
});

test('hour ranges and lists, steps over a range', () => {
  assert.deepEqual(runs('8..10:30', '2026-03-10T09:00:00', 3), [
    '2026-03-10T09:30',
    '2026-03-10T10:30',
    '2026-03-11T08:30',
  ]);
  assert.deepEqual(runs('0..12/6:00', '2026-03-10T01:00:00', 3), [
    '2026-03-10T06:00',
    '2026-03-10T12:00',
    '2026-03-11T00:00',
  ]);
  assert.deepEqual(runs('3,15:05', '2026-03-10T04:00:00', 2), ['2026-03-10T15:05', '2026-03-11T03:05']);
});

test('dates: monthly, the first of the month, a day of the year, with seconds 00', () => {
  assert.equal(next('monthly', '2026-01-31T10:00:00'), '2026-02-01T00:00:00');
  assert.equal(next('*-*-01 03:00', '2026-01-01T03:00:00'), '2026-02-01T03:00:00');
  assert.equal(next('12-24 18:00:00', '2026-12-25T00:00:00'), '2027-12-24T18:00:00');
  assert.equal(next('yearly', '2026-06-01T00:00:00'), '2027-01-01T00:00:00');
  assert.equal(next('monthly 04:15', '2026-02-01T05:00:00'), '2026-03-01T04:15:00');
});

test('the 31st runs only in months that have one; 02-29 only in leap years; a weekday and a date must both match', () => {
  assert.deepEqual(runs('*-31 00:00', '2026-01-31T12:00:00', 2), ['2026-03-31T00:00', '2026-05-31T00:00']);
  assert.equal(next('02-29', '2026-01-01T00:00:00'), '2028-02-29T00:00:00');
  // The next 29th of February that is a Monday.
  assert.equal(next('mon 02-29', '2026-01-01T00:00:00'), '2044-02-29T00:00:00');
  // A Friday the 13th.
  assert.equal(next('fri *-13 09:00', '2026-01-01T00:00:00'), '2026-02-13T09:00:00');
});

test('the text is kept with spaces normalised, case does not matter', () => {
  const s = parseSchedule('  MON..Fri    22:30 ');
  assert.equal(s.text, 'MON..Fri 22:30');
  assert.deepEqual([...(s.weekdays ?? [])].sort(), [1, 2, 3, 4, 5]);
});

test('what cannot be read or never happens is refused with a clear message', () => {
  const refused = (schedule: string, why: RegExp) =>
    assert.throws(
      () => parseSchedule(schedule),
      (e: unknown) => e instanceof TernError && e.code === 'invalid_request' && why.test(e.message),
      schedule,
    );
  refused('', /empty/);
  refused('02-30', /never happens/);
  refused('*-04-31 01:00', /never happens/);
  refused('every 7m', /does not divide an hour; use one of 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60m/);
  refused('every 5h', /does not divide a day/);
  refused('every 0m', /does not divide/);
  refused('every day', /every 15m/);
  refused('25:00', /hour 25 is not within 0..23/);
  refused('12:60', /minute 60 is not within 0..59/);
  refused('12:30:15', /whole minutes/);
  refused('funday 12:00', /"funday" is not a weekday/);
  refused('mondayish', /not a weekday/);
  refused('2027-01-01', /a year cannot be chosen/);
  refused('10..8:00', /runs backwards/);
  refused('*:0/0', /step/);
  refused('hourly 02:00', /takes no more than a time/);
  refused('daily mon', /takes no more than a time/);
  refused('22:30 mon', /order is: weekdays, date, time/);
  refused('mon 22:30 extra', /cannot read "extra"/);
  refused('x'.repeat(300), /longer than 200/);
});

test('local time: a time skipped by the spring DST change runs after the gap, a repeated one runs once', () => {
  const saved = process.env.TZ;
  process.env.TZ = 'Europe/Berlin';
  try {
    // 2026-03-29 02:00 → 03:00 in Berlin; 2026-10-25 03:00 → 02:00.
    const s = parseSchedule('daily 02:30');
    const spring = nextRuns(s, new Date('2026-03-28T12:00:00Z'), 2, 'local').map((d) => d.toISOString());
    // 02:30 does not exist on the 29th: the backup runs at 03:30 CEST (01:30Z), not never.
    assert.deepEqual(spring, ['2026-03-29T01:30:00.000Z', '2026-03-30T00:30:00.000Z']);
    const autumn = nextRuns(s, new Date('2026-10-24T12:00:00Z'), 3, 'local').map((d) => d.toISOString());
    assert.deepEqual(autumn, [
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
      '2026-10-27T01:30:00.000Z',
    ]);
    // Local midnight, not UTC midnight.
    assert.equal(
      nextRun(parseSchedule('daily'), new Date('2026-06-01T12:00:00Z'))?.toISOString(),
      '2026-06-01T22:00:00.000Z',
    );
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
});

test('every minute of a week is a quick search', () => {
  const s = parseSchedule('minutely');
  const t0 = performance.now();
  assert.equal(nextRuns(s, utc('2026-03-10T00:00:00'), 7 * 1440, 'utc').length, 7 * 1440);
  assert.ok(performance.now() - t0 < 2000);
});
