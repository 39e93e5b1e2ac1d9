/**
 * What a task's cleanup could not undo. A cleanup tries every undo step, even after one
 * fails, then throws one error naming each step that failed: the engine says "undone" only
 * when nothing is left (tasks/engine.ts).
 */
import { asTernError, TernError } from '../../errors.ts';

export class Undo {
  readonly #failed: TernError[] = [];
  readonly #what: string[] = [];

  /** Runs one undo step; a failure is kept as `what` was not done, and the next step runs. */
  async step(what: string, undo: () => Promise<unknown>): Promise<void> {
    try {
      await undo();
    } catch (err) {
      this.fail(what, err);
    }
  }

  /** Records a step that could not be done (or whose outcome leaves something behind). */
  fail(what: string, err: unknown): void {
    const e = asTernError(err);
    this.#failed.push(e);
    this.#what.push(`${what}: ${e.message}`);
  }

  /** Throws one error naming every step that failed; returns when all succeeded. */
  done(): void {
    if (this.#failed.length === 0) return;
    // A full manager disk is kept as such: the engine retries the cleanup once it can record it.
    const full = this.#failed.find((e) => e.code === 'manager_disk_full');
    throw new TernError(
      full ? full.code : this.#failed[0].code,
      `could not ${this.#what.join('; could not ')}`,
    );
  }
}
