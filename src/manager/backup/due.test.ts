import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dueJobs, nextWake, type ScheduledJob } from './due.ts';
import { parseSchedule } from './schedule.ts';

const t = (s: string) => new Date(`${s}Z`);
const job = (id: string, schedule: string, nextRunAt: string | null, enabled = true): ScheduledJob => ({
  id,
  schedule: parseSchedule(schedule),
  enabled,
  nextRunAt: nextRunAt === null ? null : t(nextRunAt),
});
const iso = (d: Date | null) => d?.toISOString().slice(0, 16) ?? null;

test('a job runs when its next run has come, and is planned for the schedule’s next after now', () => {
  const plans = dueJobs(
    [job('due', 'daily 02:00', '2026-03-10T02:00:00'), job('later', 'daily 03:00', '2026-03-10T03:00:00')],
    t('2026-03-10T02:00:00'),
    'utc',
  );
  assert.deepEqual(
    plans.map((p) => [p.id, p.run, iso(p.nextRunAt), p.missed]),
    [['due', true, '2026-03-11T02:00', false]],
  );
});

test('runs missed while the manager was away are made up by one run, flagged missed', () => {
  const [p] = dueJobs([job('j', 'hourly', '2026-03-10T02:00:00')], t('2026-03-10T07:30:00'), 'utc');
  assert.deepEqual(
    [p.run, iso(p.was), iso(p.nextRunAt), p.missed],
    [true, '2026-03-10T02:00', '2026-03-10T08:00', true],
  );
});

test('a job not planned yet is planned, not run; a disabled job is left alone', () => {
  const plans = dueJobs(
    [job('new', 'mon..fri 22:30', null), job('off', 'hourly', '2026-03-01T00:00:00', false)],
    t('2026-03-13T23:00:00'),
    'utc',
  );
  assert.deepEqual(
    plans.map((p) => [p.id, p.run, iso(p.nextRunAt)]),
    [['new', false, '2026-03-16T22:30']],
  );
});

test('the scheduler wakes for the earliest planned run of an enabled job', () => {
  assert.equal(
    iso(
      nextWake([
        job('a', 'hourly', '2026-03-10T05:00:00'),
        job('b', 'hourly', '2026-03-10T04:00:00'),
        job('c', 'hourly', '2026-03-10T01:00:00', false),
        job('d', 'hourly', null),
      ]),
    ),
    '2026-03-10T04:00',
  );
  assert.equal(nextWake([]), null);
});
