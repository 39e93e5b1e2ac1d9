/**
 * Whether the manager's own database can grow. SQLite answers SQLITE_FULL when the disk under
 * it is full; the dialect reports that here and throws `manager_disk_full` instead. From then
 * on the free space is watched (statfs, which writes nothing) until there is room again, and
 * whoever could not write while the disk was full is told, to write it now (`onRoom`).
 */
import fs from 'node:fs';
import path from 'node:path';
import { asTernError, TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';

/** Room the disk needs before it counts as having room again, so one freed block is no flapping. */
const roomBytes = 8 * 1024 * 1024;

export class DiskSpace {
  readonly #file: string;
  readonly #probeMs: number;
  #log: Logger | null = null;
  #fullSince: string | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #onFull: (() => void)[] = [];
  readonly #onRoom: (() => Promise<void>)[] = [];

  /** `file`: the database; its directory's file system is the one watched. */
  constructor(file: string, probeMs = 1000) {
    this.#file = path.resolve(file);
    this.#probeMs = probeMs;
  }

  setLogger(log: Logger): void {
    this.#log = log;
  }

  /** When the disk was first found full (ISO time); null while writes go through. */
  get fullSince(): string | null {
    return this.#fullSince;
  }

  /** The error every write answers while the disk is full (where is for operators: the alert). */
  error(): TernError {
    return new TernError(
      'manager_disk_full',
      "the manager's disk is full: nothing can be changed until there is room again (see the alert manager:disk-full)",
    );
  }

  /** What operators are told (log, alert): which disk, and what to do. */
  describe(): string {
    return `the manager's disk is full: its database ${this.#file} cannot grow. Free space on that disk; Tern writes what it could not as soon as there is room`;
  }

  onFull(listener: () => void): void {
    this.#onFull.push(listener);
  }

  onRoom(listener: () => Promise<void>): void {
    this.#onRoom.push(listener);
  }

  /** A write failed for want of space (called by the dialect). */
  noteFull(): void {
    if (this.#fullSince) return;
    this.#fullSince = new Date().toISOString();
    this.#log?.error({ database: this.#file }, this.describe());
    for (const l of this.#onFull) l();
    this.#timer = setInterval(() => this.#probe(), this.#probeMs);
    this.#timer.unref();
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  #probe(): void {
    let free: number;
    try {
      const s = fs.statfsSync(path.dirname(this.#file));
      free = s.bavail * s.bsize;
    } catch {
      return;
    }
    if (free < roomBytes) return;
    this.close();
    this.#fullSince = null;
    this.#log?.info({ database: this.#file, freeBytes: free }, "the manager's disk has room again");
    void (async () => {
      for (const l of this.#onRoom) {
        await l().catch((err) => this.#log?.error({ err }, 'catching up after the disk was full failed'));
      }
    })();
  }
}

/**
 * A write that a read does on the side (when a token was last used, when a host was last
 * heard): it may fail, and then the read still answers. A full disk is reported once by the
 * space watch, so it is not logged again for every request.
 */
export async function bestEffort(write: Promise<unknown>, log: Logger | null, what: string): Promise<void> {
  try {
    await write;
  } catch (err) {
    const e = asTernError(err);
    if (e.code !== 'manager_disk_full') log?.warn({ err: e.message }, `could not record ${what}`);
  }
}
