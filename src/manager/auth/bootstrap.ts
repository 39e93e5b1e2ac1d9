/**
 * The first admin. A new manager has one user, `admin`, with no password (it logs in with
 * the API token written at first start, and sets a password for the web UI with
 * `tern user passwd admin`); tokens made before users existed become that admin's.
 */
import { TernError } from '../../errors.ts';
import type { Db } from '../db/database.ts';
import type { UserRow, UserStore } from '../identity/users.ts';
import type { TokenStore } from './tokens.ts';

/** The first enabled admin, made on a new manager; undefined when every admin is gone. */
export async function ensureAdmin(db: Db, users: UserStore): Promise<UserRow | undefined> {
  const admin =
    (await users.count()) === 0
      ? await users.create({ name: 'admin', role: 'admin' })
      : await findAdmin(db, users);
  if (!admin) return undefined;
  await db
    .updateTable('apiTokens')
    .set({ userId: admin.id })
    .where('userId', 'is', null)
    .where('role', '=', 'admin')
    .execute();
  return admin;
}

async function findAdmin(db: Db, users: UserStore): Promise<UserRow | undefined> {
  const rows = await db
    .selectFrom('users')
    .selectAll()
    .where('disabled', '=', 0)
    .orderBy('createdAt')
    .execute();
  for (const r of rows) if ((await users.rolesOf(r)).includes('admin')) return r;
  return undefined;
}

/** An API token for the first admin, e.g. for the CLI's config at first start. */
export async function issueAdminToken(
  s: { db: Db; users: UserStore; tokens: TokenStore },
  name: string,
): Promise<string> {
  const admin = await findAdmin(s.db, s.users);
  if (!admin) throw new TernError('conflict', 'no enabled admin user exists');
  return (await s.tokens.create({ name, userId: admin.id })).token;
}
