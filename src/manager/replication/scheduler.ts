/**
 * Runs replication cycles when the RPO watch says one is due (rpo.ts: paced from the newest
 * point, none while one runs or while paused), and keeps each relationship's RPO alert in step
 * with it: raised while the replica trails by more than twice its interval, cleared when it is
 * back within. It wakes at the earliest next cycle, at least every 10 s.
 *
 * A cycle is claimed before it is started: the relationship's last task is moved
 * compare-and-set to a fresh claim, so of two managers on one database only the one that moved
 * it starts the cycle (the relationship's task lock guards the rest). At most `maxRunning`
 * cycles run at once; the others wait for a later tick, most overdue first.
 */
import { randomUUID } from 'node:crypto';
import { asTernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { ReplicationRpo } from '../../wire/api/replication.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { Db } from '../db/database.ts';
import type { ReplicationTable } from '../db/schema.ts';
import type { TaskEngine, TaskKind } from '../tasks/engine.ts';
import { WakeLoop } from '../tasks/wake-loop.ts';
import { type CycleParams, submitCycle } from './cycle.ts';
import type { Replications } from './relationships.ts';
import { rpoOf } from './rpo-view.ts';

const maxSleepMs = 10_000;
export const maxRunning = 8;

export interface ReplicationSchedulerDeps {
  db: Db;
  replications: Replications;
  tasks: TaskEngine;
  alerts: AlertStore;
  log: Logger;
}

export const rpoAlertId = (replicationId: string) => `replication:${replicationId}:rpo`;

/** A relationship as the scheduler sees it at one instant. */
interface Watched {
  row: ReplicationTable;
  vm: string;
  rpo: ReplicationRpo;
  running: boolean;
}

export class ReplicationScheduler {
  readonly #deps: ReplicationSchedulerDeps;
  readonly #kind: TaskKind<CycleParams>;
  readonly #loop = new WakeLoop({
    tick: () => this.tick(new Date()),
    failed: (err) => this.#deps.log.error({ err }, 'the replication scheduler could not run its cycles'),
    sleepMs: (r: { nextAt: number | null } | undefined) => {
      const next = r?.nextAt ?? null;
      return next === null ? maxSleepMs : Math.min(maxSleepMs, Math.max(1000, next - Date.now()));
    },
  });

  constructor(deps: ReplicationSchedulerDeps, kind: TaskKind<CycleParams>) {
    this.#deps = deps;
    this.#kind = kind;
  }

  start(): void {
    this.#loop.start();
  }

  stop(): void {
    this.#loop.stop();
  }

  /**
   * Raises and clears RPO alerts as of `now`, and starts the cycles due then. Returns the ids of
   * the tasks started and when the next cycle is due (epoch ms; null: none planned).
   */
  async tick(now: Date): Promise<{ started: string[]; nextAt: number | null }> {
    const watched = await this.#watch(now.getTime());
    for (const w of watched) await this.#alert(w);
    let running = watched.filter((w) => w.running).length;
    // A replica kept here for another site is cycled by that site; its RPO is watched all the same.
    const due = watched
      .filter(
        (w) =>
          w.row.sourceSiteId === null &&
          !w.running &&
          w.rpo.nextCycleAt !== null &&
          Date.parse(w.rpo.nextCycleAt) <= now.getTime(),
      )
      .sort((a, b) => Date.parse(a.rpo.nextCycleAt ?? '') - Date.parse(b.rpo.nextCycleAt ?? ''));
    const started: string[] = [];
    for (const w of due) {
      if (running >= maxRunning) break;
      const id = await this.#start(w);
      if (id) {
        started.push(id);
        running++;
      }
    }
    const later = watched
      .filter(
        (w) => !w.running && w.rpo.nextCycleAt !== null && Date.parse(w.rpo.nextCycleAt) > now.getTime(),
      )
      .map((w) => Date.parse(w.rpo.nextCycleAt ?? ''));
    return { started, nextAt: later.length > 0 ? Math.min(...later) : null };
  }

  async #watch(now: number): Promise<Watched[]> {
    const { db, replications } = this.#deps;
    const rows = await replications.rows();
    const out: Watched[] = [];
    for (const row of rows) {
      const newest = await db
        .selectFrom('recoveryPoints')
        .select('takenAt')
        .where('replicationId', '=', row.id)
        .orderBy('id', 'desc')
        .executeTakeFirst();
      const task = row.lastTaskId
        ? await db
            .selectFrom('tasks')
            .select(['state', 'startedAt', 'createdAt'])
            .where('id', '=', row.lastTaskId)
            .executeTakeFirst()
        : undefined;
      const running = task !== undefined && (task.state === 'queued' || task.state === 'running');
      const rpo = rpoOf(
        row,
        newest ? Date.parse(newest.takenAt) : null,
        running ? Date.parse(task.startedAt ?? task.createdAt) : null,
        now,
      );
      const vm = await db.selectFrom('vms').select('name').where('id', '=', row.vmId).executeTakeFirst();
      out.push({ row, vm: vm?.name ?? row.sourceVmName ?? row.vmId, rpo, running });
    }
    return out;
  }

  async #alert(w: Watched): Promise<void> {
    const id = rpoAlertId(w.row.id);
    if (w.rpo.state !== 'alert') {
      await this.#deps.alerts.clear(id);
      return;
    }
    await this.#deps.alerts.raise({
      id,
      severity: 'critical',
      object: `replication:${w.row.id}`,
      message: `the replica of VM ${w.vm} breaks its RPO: ${w.rpo.why}${w.row.lastError ? `; last cycle: ${w.row.lastError}` : ''}`,
    });
  }

  /** Claims the relationship's next cycle (compare and set), then starts it; null when another took it. */
  async #start(w: Watched): Promise<string | null> {
    const { db, replications, tasks, log } = this.#deps;
    const claim = randomUUID();
    const moved = await db
      .updateTable('replications')
      .set({ lastTaskId: claim })
      .where('id', '=', w.row.id)
      .where((eb) =>
        w.row.lastTaskId === null ? eb('lastTaskId', 'is', null) : eb('lastTaskId', '=', w.row.lastTaskId),
      )
      .executeTakeFirst();
    if (Number(moved.numUpdatedRows) !== 1) return null;
    try {
      return (await submitCycle({ tasks, replications }, this.#kind, w.row.id)).id;
    } catch (err) {
      // Paused meanwhile, or a cycle asked for by hand holds its lock: this one is skipped.
      log.warn({ err: asTernError(err), replication: w.row.id }, 'a replication cycle was not started');
      return null;
    }
  }

  /** Waits for a tick in progress (tests, shutdown). */
  async idle(): Promise<void> {
    await this.#loop.idle();
  }
}
