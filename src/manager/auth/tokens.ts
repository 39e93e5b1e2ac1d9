/**
 * API tokens. Only a SHA-256 hash of each token is stored; the token itself is shown once,
 * when it is made. Tokens carry a role; roles beyond admin arrive with access control.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import { type Db, now } from '../db/database.ts';

export interface Principal {
  tokenId: string;
  name: string;
  role: string;
}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

export class TokenStore {
  readonly #db: Db;
  readonly #lastUsedWrites = new Map<string, number>();

  constructor(db: Db) {
    this.#db = db;
  }

  async create(
    name: string,
    role: string,
    expiresAt: string | null = null,
  ): Promise<{ id: string; token: string }> {
    const token = `tern_${randomBytes(24).toString('base64url')}`;
    const id = randomUUID();
    await this.#db
      .insertInto('apiTokens')
      .values({ id, name, hash: hash(token), role, createdAt: now(), expiresAt, lastUsedAt: null })
      .execute();
    return { id, token };
  }

  async count(): Promise<number> {
    const r = await this.#db
      .selectFrom('apiTokens')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  async authenticate(header: string | undefined): Promise<Principal> {
    const token = header?.startsWith('Bearer ') ? header.slice(7).trim() : undefined;
    if (!token)
      throw new TernError('unauthorized', 'an API token is required (Authorization: Bearer <token>)');
    const row = await this.#db
      .selectFrom('apiTokens')
      .selectAll()
      .where('hash', '=', hash(token))
      .executeTakeFirst();
    if (!row) throw new TernError('unauthorized', 'the API token is not valid');
    if (row.expiresAt && row.expiresAt < now())
      throw new TernError('unauthorized', 'the API token has expired');
    // Record use at most once a minute per token, so reads stay reads.
    const last = this.#lastUsedWrites.get(row.id) ?? 0;
    if (Date.now() - last > 60_000) {
      this.#lastUsedWrites.set(row.id, Date.now());
      await this.#db.updateTable('apiTokens').set({ lastUsedAt: now() }).where('id', '=', row.id).execute();
    }
    return { tokenId: row.id, name: row.name, role: row.role };
  }
}
