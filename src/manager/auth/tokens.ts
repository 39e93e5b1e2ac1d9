/**
 * API tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once,
 * when it is made. A token acts for its user, may be narrowed to some permissions, expires,
 * and can be revoked; revocation holds at the next request.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { ApiToken } from '../../wire/identity.ts';
import { isPermission, type Permission } from '../../wire/permissions.ts';
import { type Db, now } from '../db/database.ts';
import { bestEffort } from '../db/disk-space.ts';
import type { ApiTokenTable } from '../db/schema.ts';

export const secretHash = (secret: string) => createHash('sha256').update(secret).digest('hex');

export class TokenStore {
  readonly #db: Db;
  readonly #lastUsedWrites = new Map<string, number>();

  constructor(db: Db) {
    this.#db = db;
  }

  async create(t: {
    name: string;
    userId: string;
    scopes?: Permission[] | null;
    expiresAt?: string | null;
  }): Promise<{ id: string; token: string }> {
    const token = `tern_${randomBytes(24).toString('base64url')}`;
    const id = randomUUID();
    await this.#db
      .insertInto('apiTokens')
      .values({
        id,
        name: t.name,
        hash: secretHash(token),
        // Rights come from the user now; the column stays for tokens made before users.
        role: '',
        userId: t.userId,
        scopes: t.scopes ? JSON.stringify(t.scopes) : null,
        createdAt: now(),
        expiresAt: t.expiresAt ?? null,
        lastUsedAt: null,
        revokedAt: null,
      })
      .execute();
    return { id, token };
  }

  async count(): Promise<number> {
    const r = await this.#db
      .selectFrom('apiTokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('revokedAt', 'is', null)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The token's row when it is valid now; throws `unauthorized` with the reason otherwise. */
  async verify(token: string): Promise<ApiTokenTable> {
    const row = await this.#db
      .selectFrom('apiTokens')
      .selectAll()
      .where('hash', '=', secretHash(token))
      .executeTakeFirst();
    if (!row) throw new TernError('unauthorized', 'the API token is not valid');
    if (row.revokedAt) throw new TernError('unauthorized', 'the API token was revoked');
    if (row.expiresAt && row.expiresAt < now())
      throw new TernError('unauthorized', 'the API token has expired');
    // Record use at most once a minute per token, so reads stay reads; and a read answers even
    // when the use cannot be recorded (a full disk).
    const last = this.#lastUsedWrites.get(row.id) ?? 0;
    if (Date.now() - last > 60_000) {
      this.#lastUsedWrites.set(row.id, Date.now());
      await bestEffort(
        this.#db.updateTable('apiTokens').set({ lastUsedAt: now() }).where('id', '=', row.id).execute(),
        null,
        'when a token was last used',
      );
    }
    return row;
  }

  async list(userId?: string): Promise<ApiToken[]> {
    let q = this.#db
      .selectFrom('apiTokens')
      .leftJoin('users', 'users.id', 'apiTokens.userId')
      .select([
        'apiTokens.id',
        'apiTokens.name',
        'users.name as user',
        'apiTokens.scopes',
        'apiTokens.createdAt',
        'apiTokens.expiresAt',
        'apiTokens.lastUsedAt',
        'apiTokens.revokedAt',
      ])
      .orderBy('apiTokens.createdAt');
    if (userId) q = q.where('apiTokens.userId', '=', userId);
    return (await q.execute()).map((r) => ({ ...r, scopes: parseScopes(r.scopes) }));
  }

  async owner(id: string): Promise<string | null> {
    const row = await this.#db
      .selectFrom('apiTokens')
      .select('userId')
      .where('id', '=', id)
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `token ${id} does not exist`);
    return row.userId;
  }

  async revoke(id: string): Promise<void> {
    await this.owner(id);
    await this.#db
      .updateTable('apiTokens')
      .set({ revokedAt: now() })
      .where('id', '=', id)
      .where('revokedAt', 'is', null)
      .execute();
  }
}

/** A token's stored scopes; anything unreadable narrows to nothing rather than widening. */
export function parseScopes(column: string | null): Permission[] | null {
  if (column === null) return null;
  try {
    const v = JSON.parse(column) as unknown;
    return Array.isArray(v) ? v.filter((p): p is Permission => typeof p === 'string' && isPermission(p)) : [];
  } catch {
    return [];
  }
}
