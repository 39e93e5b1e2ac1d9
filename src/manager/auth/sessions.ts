/**
 * Web UI sessions: a random cookie value whose hash is stored. A session ends 12 hours after
 * login, after an hour without use, at logout, or when its user's password changes.
 */
import { randomBytes } from 'node:crypto';
import { type Db, now } from '../db/database.ts';
import { bestEffort } from '../db/disk-space.ts';
import type { SessionTable } from '../db/schema.ts';
import { secretHash } from './tokens.ts';

export const sessionCookie = 'tern_session';
const lifetimeMs = 12 * 3600_000;
const idleMs = 3600_000;

export class SessionStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async create(userId: string, sourceIp: string | null): Promise<{ value: string; expiresAt: string }> {
    const value = randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + lifetimeMs).toISOString();
    const t = now();
    await this.#db
      .insertInto('sessions')
      .values({ hash: secretHash(value), userId, createdAt: t, expiresAt, lastSeenAt: t, sourceIp })
      .execute();
    // Expired sessions go when new ones come, so the table never grows without bound.
    await this.#db.deleteFrom('sessions').where('expiresAt', '<', t).execute();
    return { value, expiresAt };
  }

  /** The live session with this cookie value, renewed; undefined when it is over or unknown. */
  async find(value: string): Promise<SessionTable | undefined> {
    const hash = secretHash(value);
    const row = await this.#db.selectFrom('sessions').selectAll().where('hash', '=', hash).executeTakeFirst();
    if (!row) return undefined;
    const t = Date.now();
    // What a read writes on the side may fail (a full disk) without failing the read.
    if (Date.parse(row.expiresAt) < t || Date.parse(row.lastSeenAt) + idleMs < t) {
      await bestEffort(
        this.#db.deleteFrom('sessions').where('hash', '=', hash).execute(),
        null,
        'the end of a session',
      );
      return undefined;
    }
    // Renewed at most once a minute, so reads stay reads.
    if (Date.parse(row.lastSeenAt) + 60_000 < t) {
      await bestEffort(
        this.#db.updateTable('sessions').set({ lastSeenAt: now() }).where('hash', '=', hash).execute(),
        null,
        'when a session was last used',
      );
    }
    return row;
  }

  async remove(value: string): Promise<void> {
    await this.#db.deleteFrom('sessions').where('hash', '=', secretHash(value)).execute();
  }
}
