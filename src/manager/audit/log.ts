/**
 * The audit log: who did what to which object, when, from where, and how it ended. Records
 * are only ever appended; the table's triggers refuse updates and deletes from anyone.
 */
import type { AuditRecord } from '../../wire/identity.ts';
import { type Db, now } from '../db/database.ts';
import type { AuditLogTable } from '../db/schema.ts';

/** A record as it is appended: the row without its number and time, which the log gives it. */
export type AuditEntry = Omit<AuditLogTable, 'seq' | 'at' | 'result'> & { result: AuditRecord['result'] };

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

const clip = (s: string | null, n: number) => (s !== null && s.length > n ? `${s.slice(0, n)}…` : s);

export class AuditLog {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async append(e: AuditEntry): Promise<void> {
    await this.#db
      .insertInto('auditLog')
      .values({
        at: now(),
        actor: clip(e.actor, 200) ?? '',
        actorId: e.actorId,
        via: e.via,
        action: clip(e.action, 200) ?? '',
        object: clip(e.object, 500) ?? '',
        sourceIp: e.sourceIp,
        result: e.result,
        status: e.status,
        detail: clip(e.detail, 1000),
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
