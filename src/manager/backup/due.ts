/**
 * Which backup jobs are due, pure. A job's next run is stored; when it has passed, the job runs
 * once and its next run is the schedule's next after now: runs missed while the manager was
 * down are made up by one run when it is back (as systemd's Persistent timers), not by a burst.
 */
import type { Zone } from './calendar.ts';
import { nextRun, type Schedule } from './schedule.ts';

export interface ScheduledJob {
  id: string;
  schedule: Schedule;
  enabled: boolean;
  /** null: not planned yet (just made, or enabled again). */
  nextRunAt: Date | null;
}

export interface JobPlan {
  id: string;
  /** The next run as read: the plan holds only while it is still so. */
  was: Date | null;
  /** Start a run now. */
  run: boolean;
  /** What to store as the next run (null: the schedule never comes again). */
  nextRunAt: Date | null;
  /** This run makes up for at least one run missed while the manager was away. */
  missed: boolean;
}

/** The jobs whose stored next run changes now: due ones, and enabled ones not planned yet. */
export function dueJobs(jobs: readonly ScheduledJob[], now: Date, zone: Zone = 'local'): JobPlan[] {
  const out: JobPlan[] = [];
  for (const job of jobs) {
    if (!job.enabled) continue;
    if (job.nextRunAt === null) {
      out.push({
        id: job.id,
        was: null,
        run: false,
        nextRunAt: nextRun(job.schedule, now, zone),
        missed: false,
      });
      continue;
    }
    if (job.nextRunAt.getTime() > now.getTime()) continue;
    const after = nextRun(job.schedule, job.nextRunAt, zone);
    out.push({
      id: job.id,
      was: job.nextRunAt,
      run: true,
      nextRunAt: nextRun(job.schedule, now, zone),
      missed: after !== null && after.getTime() <= now.getTime(),
    });
  }
  return out;
}

/** When to look again: the earliest next run of an enabled job, or null when none is planned. */
export function nextWake(jobs: readonly ScheduledJob[]): Date | null {
  let first: Date | null = null;
  for (const j of jobs)
    if (j.enabled && j.nextRunAt && (first === null || j.nextRunAt < first)) first = j.nextRunAt;
  return first;
}
