/**
 * Runs backup jobs when their schedule says (due.ts decides). It wakes at the earliest next
 * run, and at least every minute so a job made or changed meanwhile is seen. The next run is
 * moved (compare and set, so of two managers on one database only one starts it) before the run
 * is started: a crash between the two loses that run, never starts it twice. A job still running
 * when it is due again is not started twice: its run holds the job's lock, and the skip is logged.
 */
import { asTernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { TaskEngine, TaskKind } from '../tasks/engine.ts';
import { WakeLoop } from '../tasks/wake-loop.ts';
import { dueJobs, nextWake } from './due.ts';
import { type BackupJobParams, jobObject } from './job-run.ts';
import type { BackupJobs } from './jobs.ts';

const maxSleepMs = 60_000;

export interface SchedulerDeps {
  backupJobs: BackupJobs;
  tasks: TaskEngine;
  log: Logger;
}

export class BackupScheduler {
  readonly #deps: SchedulerDeps;
  readonly #kind: TaskKind<BackupJobParams>;
  readonly #loop = new WakeLoop({
    tick: () => this.tick(new Date()),
    failed: (err) => this.#deps.log.error({ err }, 'the backup scheduler could not run its jobs'),
    sleepMs: async () => {
      const next = nextWake(await this.#deps.backupJobs.scheduled().catch(() => []));
      const ms = next ? Math.max(0, next.getTime() - Date.now()) : maxSleepMs;
      return Math.min(ms, maxSleepMs);
    },
  });

  constructor(deps: SchedulerDeps, kind: TaskKind<BackupJobParams>) {
    this.#deps = deps;
    this.#kind = kind;
  }

  start(): void {
    this.#loop.start();
  }

  stop(): void {
    this.#loop.stop();
  }

  /** Starts the runs due at `now` and plans the next ones; the ids of the tasks started. */
  async tick(now: Date): Promise<string[]> {
    const { backupJobs, tasks, log } = this.#deps;
    const started: string[] = [];
    for (const plan of dueJobs(await backupJobs.scheduled(), now, backupJobs.zone)) {
      // Another scheduler took it (a second manager), or it changed since it was read.
      if (!(await backupJobs.setNextRun(plan.id, plan.nextRunAt, plan.was))) continue;
      if (!plan.run) continue;
      try {
        const params = { jobId: plan.id, scheduled: true, missed: plan.missed };
        const task = await tasks.submit(this.#kind, params, [jobObject(plan.id)]);
        await backupJobs.recordStart(plan.id, task.id);
        started.push(task.id);
      } catch (err) {
        // Still running from its last start (its lock held): this run is skipped, not queued.
        log.warn({ err: asTernError(err), job: plan.id }, 'a scheduled backup job run was not started');
      }
    }
    return started;
  }

  /** Waits for a tick in progress (tests, shutdown). */
  async idle(): Promise<void> {
    await this.#loop.idle();
  }
}
