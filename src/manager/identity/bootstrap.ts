/**
 * The first admin. A new manager has one user, `admin`, with no password (it logs in with
 * the API token written at first start, and sets a password for the web UI with
 * `tern user passwd admin`); tokens made before users existed become that admin's.
 */
import { TernError } from '../../errors.ts';
import type { TokenStore } from '../auth/tokens.ts';
import type { Db } from '../db/database.ts';
import type { UserRow, UserStore } from './users.ts';

export async function ensureAdmin(db: Db, users: UserStore): Promise<UserRow> {
  const admin =
    (await users.count()) === 0
      ? await users.create({ name: 'admin', role: 'admin' })
      : await firstAdmin(db, users);
  await db
    .updateTable('apiTokens')
    .set({ userId: admin.id })
    .where('userId', 'is', null)
    .where('role', '=', 'admin')
    .execute();
  return admin;
}

async function firstAdmin(db: Db, users: UserStore): Promise<UserRow> {
  const rows = await db
    .selectFrom('users')
    .selectAll()
    .where('disabled', '=', 0)
    .orderBy('createdAt')
    .execute();
  for (const r of rows) if ((await users.rolesOf(r)).includes('admin')) return r;
  throw new TernError('internal', 'no enabled admin user exists');
}

/** An API token for the first admin, e.g. for the CLI's config at first start. */
export async function issueAdminToken(
  s: { db: Db; users: UserStore; tokens: TokenStore },
  name: string,
): Promise<string> {
  const admin = await firstAdmin(s.db, s.users);
  return (await s.tokens.create({ name, userId: admin.id })).token;
}
