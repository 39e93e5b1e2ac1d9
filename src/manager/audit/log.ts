/**
 * The audit log: who did what to which object, when, from where, and how it ended. Records
 * are only ever appended; the table's triggers refuse updates from anyone, and deletes of any
 * record younger than the retention the operator set (none: every record is kept).
 * Refusals of requests without credentials are tallied per address and minute (refusals.ts).
 */

import { clip } from '../../text.ts';
import type { AuditRecord } from '../../wire/identity.ts';
import { type Db, now } from '../db/database.ts';
import type { AuditEntry } from './entry.ts';
import { RefusalTally } from './refusals.ts';

export interface AuditQuery {
  actor?: string;
  action?: string;
  /** Prefix of the object, e.g. `vms/web-1`. */
  object?: string;
  result?: 'ok' | 'denied' | 'failed';
  since?: string;
  until?: string;
  /** Records before this sequence number (paging backwards from the newest). */
  before?: number;
  limit: number;
}

export class AuditLog {
  readonly #db: Db;
  readonly #refusals: RefusalTally;

  constructor(db: Db, onError: (err: Error) => void = () => {}) {
    this.#db = db;
    this.#refusals = new RefusalTally((e) => this.append(e), onError);
  }

  /** A request without credentials was refused: counted with its address's others. */
  refusedAnonymously(e: AuditEntry): Promise<void> {
    return this.#refusals.refused(e);
  }

  /** Writes out what is still being tallied. */
  close(): Promise<void> {
    return this.#refusals.close();
  }

  /**
   * Keeps records for `days` (at least one), or for ever (null). The database's trigger reads
   * the same setting, so no other path can remove younger records.
   */
  async setRetention(days: number | null): Promise<void> {
    if (days === null) {
      await this.#db.deleteFrom('settings').where('key', '=', 'audit').execute();
      return;
    }
    if (!Number.isInteger(days) || days < 1)
      throw new Error('the audit retention is a whole number of days, at least 1');
    const value = JSON.stringify({ retentionDays: days });
    await this.#db
      .insertInto('settings')
      .values({ key: 'audit', value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }

  async retentionDays(): Promise<number | null> {
    const row = await this.#db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', 'audit')
      .executeTakeFirst();
    return row ? ((JSON.parse(row.value) as { retentionDays?: number }).retentionDays ?? null) : null;
  }

  /**
   * Removes the records older than the retention, oldest first, and says so in the log itself
   * (the gap is explained by a record of who removed what).
   */
  async prune(at = Date.now()): Promise<number> {
    const days = await this.retentionDays();
    if (days === null) return 0;
    const cutoff = new Date(at - days * 24 * 3600_000).toISOString();
    const r = await this.#db.deleteFrom('auditLog').where('at', '<', cutoff).executeTakeFirst();
    const removed = Number(r.numDeletedRows);
    if (removed > 0)
      await this.append({
        actor: 'tern',
        actorId: null,
        via: 'retention',
        action: 'prune audit log',
        object: 'audit',
        sourceIp: null,
        result: 'ok',
        status: null,
        detail: `${removed} record${removed === 1 ? '' : 's'} from before ${cutoff} removed: the audit retention is ${days} days`,
      });
    return removed;
  }

  async append(e: AuditEntry): Promise<void> {
    await this.#db
      .insertInto('auditLog')
      .values({
        at: now(),
        actor: clip(e.actor ?? '', 200),
        actorId: e.actorId,
        via: e.via,
        action: clip(e.action ?? '', 200),
        object: clip(e.object ?? '', 500),
        sourceIp: e.sourceIp,
        result: e.result,
        status: e.status,
        detail: e.detail === null ? null : clip(e.detail, 1000),
      })
      .execute();
  }

  async query(q: AuditQuery): Promise<{ items: AuditRecord[]; nextCursor: string | null }> {
    let s = this.#db
      .selectFrom('auditLog')
      .select(['seq', 'at', 'actor', 'via', 'action', 'object', 'sourceIp', 'result', 'status', 'detail'])
      .orderBy('seq', 'desc')
      .limit(q.limit + 1);
    if (q.actor) s = s.where('actor', '=', q.actor);
    if (q.action) s = s.where('action', '=', q.action);
    if (q.object) s = s.where('object', '>=', q.object).where('object', '<', `${q.object}\u{10ffff}`);
    if (q.result) s = s.where('result', '=', q.result);
    if (q.since) s = s.where('at', '>=', q.since);
    if (q.until) s = s.where('at', '<', q.until);
    if (q.before !== undefined) s = s.where('seq', '<', q.before);
    const rows = await s.execute();
    const items = rows.slice(0, q.limit).map((r) => ({ ...r, result: r.result as AuditRecord['result'] }));
    return { items, nextCursor: rows.length > q.limit ? String(items[items.length - 1].seq) : null };
  }
}
