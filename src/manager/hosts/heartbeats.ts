/**
 * Hearing from hosts: when each host's own heartbeat last arrived (what HA's detector reads as
 * the host's network being up), and `lastSeen`, the bookkeeping users see.
 */
import type { Logger } from '../../log.ts';
import { type Db, now } from '../db/database.ts';
import { bestEffort } from '../db/disk-space.ts';

export class HostHeartbeats {
  readonly #db: Db;
  readonly #log: Logger;
  /** Monotonic arrival time of each host's last heartbeat on the cluster endpoint. */
  readonly #heard = new Map<string, number>();

  constructor(db: Db, log: Logger) {
    this.#db = db;
    this.#log = log;
  }

  /**
   * A host's own heartbeat over the cluster endpoint (the event stream has its own). Hearing
   * the host is what counts; `lastSeen` is bookkeeping that a full disk must not turn into a
   * failed heartbeat.
   */
  async heard(hostId: string): Promise<void> {
    this.#heard.set(hostId, performance.now());
    await this.seen(hostId, now());
  }

  /** When (this manager's monotonic clock) the host's own heartbeat last arrived; null: not yet. */
  heardAt(hostId: string): number | null {
    return this.#heard.get(hostId) ?? null;
  }

  /** Records when a host was last seen, unless the manager's disk cannot take it. */
  async seen(hostId: string, time: string): Promise<void> {
    await bestEffort(
      this.#db.updateTable('hosts').set({ lastSeen: time }).where('id', '=', hostId).execute(),
      this.#log,
      'when a host was last seen',
    );
  }
}
