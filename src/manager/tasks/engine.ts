/**
 * The durable task engine. Every operation that can take over a second is a task: a row with
 * state, step, progress, log lines, result or error, and locks on the objects it touches.
 * After a manager crash, `recover` resumes each interrupted task whose kind is idempotent and
 * fails the others after running their cleanup, so no task stays "running" forever. Either
 * waits first, through the recovery gate, for the hosts the task acts on: right after a
 * restart their agents may not be connected yet (in all-in-one the agent starts after the
 * manager), and a cleanup that cannot reach its host has undone nothing.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { asTernError, TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Task, TaskLogLine, TaskState } from '../../wire/task.ts';
import { currentPrincipal } from '../auth/principal.ts';
import { type Db, now } from '../db/database.ts';
import type { TaskTable } from '../db/schema.ts';
import type { EventBus } from '../events/bus.ts';

export interface TaskContext {
  readonly id: string;
  /** True when this run continues a task interrupted by a manager restart. */
  readonly resumed: boolean;
  readonly signal: AbortSignal;
  step(name: string, progress?: number): Promise<void>;
  progress(percent: number): Promise<void>;
  log(line: string): Promise<void>;
  throwIfCancelled(): void;
}

export interface TaskKind<P> {
  readonly kind: string;
  /** `resume`: run() is idempotent and continues after a restart; `fail`: clean up and fail. */
  readonly onInterrupt: 'resume' | 'fail';
  run(ctx: TaskContext, params: P): Promise<unknown>;
  /** Undoes partial work after a failure, cancellation or interruption. */
  cleanup?(ctx: TaskContext, params: P, error: TernError): Promise<void>;
}

/**
 * Holds a recovered task back until what it needs is reachable (its hosts' agents), with a
 * bound; throws when the wait is over without them: an undo then fails saying so, a resumed
 * task goes on. `objects` are the task's locked objects.
 */
export type RecoveryGate = (objects: string[], ctx: TaskContext) => Promise<void>;

const maxLogLine = 2000;
const interrupted = 'the manager stopped while this task ran';

function toTask(row: TaskTable, log?: TaskLogLine[]): Task {
  return {
    id: row.id,
    kind: row.kind,
    objects: JSON.parse(row.objects) as string[],
    state: row.state as TaskState,
    step: row.step,
    progress: row.progress,
    cancelRequested: row.cancelRequested === 1,
    result: row.result === null ? null : JSON.parse(row.result),
    error: row.error === null ? null : JSON.parse(row.error),
    ...(log ? { log } : {}),
    requestedBy: row.requestedBy,
    createdAt: row.createdAt,
    startedAt: row.startedAt,
    finishedAt: row.finishedAt,
  };
}

export class TaskEngine {
  readonly #db: Db;
  readonly #bus: EventBus;
  readonly #log: Logger;
  // biome-ignore lint/suspicious/noExplicitAny: each kind has its own params type
  readonly #kinds = new Map<string, TaskKind<any>>();
  readonly #running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  /** Recovered tasks still waiting for their hosts: a stopping manager leaves them to the next. */
  readonly #gated = new Set<string>();
  #closing = false;
  /**
   * Tasks of this process that ended while their end could not be written (the manager's disk
   * was full): how to end them, again, once it can be (`catchUp`).
   */
  readonly #unrecorded = new Map<string, () => Promise<void>>();

  constructor(db: Db, bus: EventBus, log: Logger) {
    this.#db = db;
    this.#bus = bus;
    this.#log = log;
  }

  register<P>(kind: TaskKind<P>): void {
    this.#kinds.set(kind.kind, kind);
  }

  /** Records the task and takes its locks in one transaction, then starts it. */
  async submit<P>(kind: TaskKind<P>, params: P, objects: string[]): Promise<Task> {
    if (this.#closing) throw new TernError('unavailable', 'the manager is shutting down');
    if (!this.#kinds.has(kind.kind)) this.register(kind);
    const id = randomUUID();
    const row: TaskTable = {
      id,
      kind: kind.kind,
      objects: JSON.stringify(objects),
      state: 'queued',
      step: 'queued',
      progress: 0,
      cancelRequested: 0,
      params: JSON.stringify(params),
      result: null,
      error: null,
      createdAt: now(),
      startedAt: null,
      finishedAt: null,
      requestedBy: currentPrincipal()?.userId ?? null,
    };
    await this.#db.transaction().execute(async (trx) => {
      if (objects.length > 0) {
        const held = await trx
          .selectFrom('taskLocks')
          .innerJoin('tasks', 'tasks.id', 'taskLocks.taskId')
          .select(['taskLocks.object', 'tasks.id', 'tasks.kind'])
          .where('taskLocks.object', 'in', objects)
          .executeTakeFirst();
        if (held) {
          throw new TernError(
            'locked',
            `${held.object} is busy with task ${held.id} (${held.kind}); wait for it (tern task wait) or cancel it`,
            {
              object: held.object,
              task: held.id,
            },
          );
        }
      }
      await trx.insertInto('tasks').values(row).execute();
      for (const object of objects)
        await trx.insertInto('taskLocks').values({ object, taskId: id }).execute();
    });
    const task = toTask(row);
    this.#bus.publish({ type: 'task', task });
    this.#start(id, kind, params, false);
    return task;
  }

  async get(id: string, withLog = false): Promise<Task> {
    const row = await this.#db.selectFrom('tasks').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new TernError('not_found', `task ${id} does not exist`);
    const log = withLog
      ? await this.#db
          .selectFrom('taskLog')
          .select(['time', 'line'])
          .where('taskId', '=', id)
          .orderBy('id')
          .execute()
      : undefined;
    return toTask(row, log);
  }

  async list(filter: {
    state?: TaskState;
    object?: string;
    /** Only tasks this user asked for. */
    requestedBy?: string;
    limit: number;
    before?: string;
  }): Promise<Task[]> {
    let q = this.#db
      .selectFrom('tasks')
      .selectAll()
      .orderBy('createdAt', 'desc')
      .orderBy('id')
      .limit(filter.limit);
    if (filter.state) q = q.where('state', '=', filter.state);
    if (filter.object) {
      // One whole element of the JSON list, its % and _ meaning themselves.
      const element = JSON.stringify(filter.object).replace(/[\\%_]/g, (c) => `\\${c}`);
      q = q.where(sql<boolean>`objects like ${`%${element}%`} escape '\\'`);
    }
    if (filter.before) q = q.where('createdAt', '<', filter.before);
    if (filter.requestedBy) q = q.where('requestedBy', '=', filter.requestedBy);
    return (await q.execute()).map((r) => toTask(r));
  }

  async cancel(id: string): Promise<Task> {
    const task = await this.get(id);
    if (task.state !== 'queued' && task.state !== 'running') {
      throw new TernError('conflict', `task ${id} already ${task.state}`);
    }
    await this.#db.updateTable('tasks').set({ cancelRequested: 1 }).where('id', '=', id).execute();
    this.#running.get(id)?.controller.abort(new TernError('cancelled', 'cancelled by request'));
    return this.#publish(id);
  }

  /** Waits until the task has finished (for internal callers and tests). */
  async settled(id: string): Promise<Task> {
    await this.#running.get(id)?.done;
    return this.get(id, true);
  }

  /**
   * Picks up tasks a previous manager process left queued or running. Returns at once: each
   * recovered task waits for its gate in the background, still running and holding its locks,
   * so the manager (and, in all-in-one, the local agent) can start meanwhile.
   */
  async recover(gate: RecoveryGate = async () => {}): Promise<void> {
    const rows = await this.#db
      .selectFrom('tasks')
      .selectAll()
      .where('state', 'in', ['queued', 'running'])
      .execute();
    for (const row of rows) {
      const kind = this.#kinds.get(row.kind);
      const params = JSON.parse(row.params) as unknown;
      const objects = JSON.parse(row.objects) as string[];
      this.#gated.add(row.id);
      if (kind && kind.onInterrupt === 'resume' && row.cancelRequested === 0) {
        await this.#appendLog(row.id, 'manager restarted; resuming');
        this.#track(row.id, (controller) =>
          this.#execute(row.id, kind, params, controller, true, (ctx) => gate(objects, ctx)),
        );
        continue;
      }
      await this.#appendLog(row.id, 'manager restarted; undoing its partial work');
      this.#track(row.id, (controller) =>
        this.#undo(row.id, kind, params, controller, row.cancelRequested === 1, (ctx) => gate(objects, ctx)),
      );
    }
  }

  /**
   * Runs the cleanup of a task that cannot resume, once its gate opens, and ends it. Says
   * "undone" only when the cleanup succeeded; otherwise the error names what was left.
   */
  async #undo<P>(
    id: string,
    kind: TaskKind<P> | undefined,
    params: P,
    controller: AbortController,
    cancelled: boolean,
    gate: (ctx: TaskContext) => Promise<void>,
  ): Promise<void> {
    const ctx = this.#context(id, controller, true);
    let error = new TernError('internal', `${interrupted}; its partial work was undone`);
    try {
      if (kind?.cleanup) {
        await this.#waitAtGate(id, controller, () => gate(ctx));
        await kind.cleanup(ctx, params, error);
        await this.#appendLog(id, 'manager restarted; cleaned up and marked failed');
      } else {
        this.#gated.delete(id);
        error = new TernError('internal', `${interrupted}; a ${kind?.kind ?? 'task'} does not resume`);
      }
    } catch (err) {
      if (this.#abandoned(controller)) return;
      const why = asTernError(err).message;
      await this.#appendLog(id, `cleanup after restart failed: ${why}`);
      error = new TernError('internal', `${interrupted}; undoing its partial work failed: ${why}`);
    }
    await this.#finish(id, cancelled ? 'cancelled' : 'failed', null, error);
  }

  /** Stops accepting tasks and waits for the running ones (bounded). */
  async close(timeoutMs = 10_000): Promise<void> {
    this.#closing = true;
    for (const id of this.#gated)
      this.#running.get(id)?.controller.abort(new TernError('unavailable', 'manager stopping'));
    const all = Promise.all([...this.#running.values()].map((r) => r.done));
    await Promise.race([all, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
  }

  /** Ends without waiting, as a crash would (tests of recovery use it). */
  abandon(): void {
    this.#closing = true;
    for (const r of this.#running.values())
      r.controller.abort(new TernError('unavailable', 'manager stopping'));
  }

  /** Waits at a recovered task's gate; the task counts as gated from recover() until it passes. */
  async #waitAtGate(id: string, controller: AbortController, wait: () => Promise<void>): Promise<void> {
    try {
      if (controller.signal.aborted) throw controller.signal.reason;
      await wait();
    } finally {
      this.#gated.delete(id);
    }
  }

  #start<P>(id: string, kind: TaskKind<P>, params: P, resumed: boolean): void {
    this.#track(id, (controller) => this.#execute(id, kind, params, controller, resumed));
  }

  #track(id: string, work: (controller: AbortController) => Promise<void>): void {
    const controller = new AbortController();
    const done = work(controller)
      .catch((err) => this.#log.error({ err, task: id }, 'could not record the end of a task'))
      .finally(() => this.#running.delete(id));
    this.#running.set(id, { controller, done });
  }

  /** Abandoned (a simulated crash): the row stays running for the next manager to recover. */
  #abandoned(controller: AbortController): boolean {
    return this.#closing && (controller.signal.reason as TernError | undefined)?.code === 'unavailable';
  }

  async #execute<P>(
    id: string,
    kind: TaskKind<P>,
    params: P,
    controller: AbortController,
    resumed: boolean,
    gate?: (ctx: TaskContext) => Promise<void>,
  ) {
    const ctx = this.#context(id, controller, resumed);
    try {
      // A resumed task keeps the time it first started.
      await this.#db
        .updateTable('tasks')
        .set((eb) => ({ state: 'running', startedAt: eb.fn.coalesce('startedAt', eb.val(now())) }))
        .where('id', '=', id)
        .execute();
      await this.#publish(id);
      // A resumed task whose host stays away goes on after the wait: it copes with an
      // unreachable host as it would without a restart (a start places the VM elsewhere).
      if (gate)
        await this.#waitAtGate(id, controller, () => gate(ctx)).catch(async (err) => {
          if (controller.signal.aborted) throw err;
          await this.#appendLog(id, `${asTernError(err).message}; going on without it`);
        });
      ctx.throwIfCancelled();
      const result = await kind.run(ctx, params);
      await this.#ending(id, () => this.#finish(id, 'succeeded', result ?? null, null));
    } catch (err) {
      if (this.#abandoned(controller)) return;
      if (this.#unrecorded.has(id)) throw err;
      const error = asTernError(err);
      const cancelled = controller.signal.aborted && error.code === 'cancelled';
      // The log lines are the least of it: the cleanup runs even when they cannot be written.
      await this.#appendLog(id, `${cancelled ? 'cancelled' : 'failed'}: ${error.message}`).catch(() => {});
      await this.#ending(id, async () => {
        if (kind.cleanup) {
          try {
            await kind.cleanup(this.#context(id, new AbortController(), resumed), params, error);
          } catch (cleanupErr) {
            const e = asTernError(cleanupErr);
            // What the cleanup undid could not be recorded: it runs again once it can be.
            if (e.code === 'manager_disk_full') throw e;
            await this.#appendLog(id, `cleanup failed: ${e.message}`);
          }
        }
        await this.#finish(id, cancelled ? 'cancelled' : 'failed', null, error);
      });
    }
  }

  /** Ends a task; when that cannot be written (a full disk), keeps it for `catchUp`. */
  async #ending(id: string, end: () => Promise<void>): Promise<void> {
    try {
      await end();
    } catch (err) {
      if (asTernError(err).code === 'manager_disk_full') this.#unrecorded.set(id, end);
      throw err;
    }
  }

  /**
   * There is room again: ends the tasks whose end could not be written, as they ended (a failed
   * one's cleanup runs again, so a half-created VM does not stay `creating`).
   */
  async catchUp(): Promise<void> {
    for (const [id, end] of [...this.#unrecorded]) {
      try {
        await end();
        this.#unrecorded.delete(id);
      } catch (err) {
        this.#log.error({ err, task: id }, 'could not record the end of a task');
      }
    }
  }

  #context(id: string, controller: AbortController, resumed: boolean): TaskContext {
    return {
      id,
      resumed,
      signal: controller.signal,
      step: async (name, progress) => {
        // Every step boundary is a place where a cancellation takes effect.
        if (controller.signal.aborted) throw asTernError(controller.signal.reason);
        await this.#db
          .updateTable('tasks')
          .set({ step: name, ...(progress === undefined ? {} : { progress: Math.round(progress) }) })
          .where('id', '=', id)
          .execute();
        await this.#appendLog(id, name);
        await this.#publish(id);
      },
      progress: async (percent) => {
        await this.#db
          .updateTable('tasks')
          .set({ progress: Math.max(0, Math.min(100, Math.round(percent))) })
          .where('id', '=', id)
          .execute();
        await this.#publish(id);
      },
      log: (line) => this.#appendLog(id, line),
      throwIfCancelled: () => {
        if (controller.signal.aborted) throw asTernError(controller.signal.reason);
      },
    };
  }

  async #appendLog(id: string, line: string): Promise<void> {
    await this.#db
      .insertInto('taskLog')
      .values({ taskId: id, time: now(), line: line.slice(0, maxLogLine) })
      .execute();
  }

  async #finish(id: string, state: TaskState, result: unknown, error: TernError | null): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .updateTable('tasks')
        .set({
          state,
          progress: state === 'succeeded' ? 100 : undefined,
          step: state,
          finishedAt: now(),
          result: result === null ? null : JSON.stringify(result),
          error: error
            ? JSON.stringify({ code: error.code, message: error.message, details: error.details })
            : null,
        })
        .where('id', '=', id)
        .execute();
      await trx.deleteFrom('taskLocks').where('taskId', '=', id).execute();
    });
    this.#log.info({ task: id, state }, 'task finished');
    await this.#publish(id);
  }

  async #publish(id: string): Promise<Task> {
    const task = await this.get(id);
    this.#bus.publish({ type: 'task', task });
    return task;
  }
}
