/**
 * Users: local ones with a scrypt password, directory (LDAP) ones recorded at their first
 * login. A user's roles are its own role plus those of its groups; no change may leave the
 * manager without an enabled admin (admins.ts).
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { TernError } from '../../errors.ts';
import type { User } from '../../wire/identity.ts';
import { isRole, type Role } from '../../wire/permissions.ts';
import { type Db, now } from '../db/database.ts';
import type { UserTable } from '../db/schema.ts';
import { keepAnAdmin } from './admins.ts';
import { hashPassword } from './passwords.ts';

export type UserRow = UserTable;

/** A user's own role and its groups' roles, each once. */
function rolesFrom(row: UserRow, groups: { role: string }[]): Role[] {
  const all = [row.role, ...groups.map((g) => g.role)];
  return [...new Set(all.filter((r): r is Role => r !== null && isRole(r)))];
}

export class UserStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async create(u: {
    name: string;
    displayName?: string | null;
    password?: string;
    role?: Role | null;
    source?: 'local' | 'ldap';
  }): Promise<UserRow> {
    // Names differing only in case would read as one person in the audit log.
    const same = await this.byName(u.name);
    if (same) throw new TernError('conflict', `user ${same.name} already exists`);
    const row: UserRow = {
      id: randomUUID(),
      name: u.name,
      displayName: u.displayName ?? null,
      source: u.source ?? 'local',
      passwordHash: u.password !== undefined ? await hashPassword(u.password) : null,
      role: u.role ?? null,
      disabled: 0,
      createdAt: now(),
      lastLoginAt: null,
    };
    await this.#db.insertInto('users').values(row).execute();
    return row;
  }

  /** By name or id; undefined when there is none. */
  async find(ref: string): Promise<UserRow | undefined> {
    return (
      (await this.#db.selectFrom('users').selectAll().where('id', '=', ref).executeTakeFirst()) ??
      (await this.byName(ref))
    );
  }

  /** By name, in any case: `Alice` and `alice` are one user. */
  async byName(name: string): Promise<UserRow | undefined> {
    return this.#db
      .selectFrom('users')
      .selectAll()
      .where(sql`lower(name)`, '=', name.toLowerCase())
      .executeTakeFirst();
  }

  async get(ref: string): Promise<UserRow> {
    const row = await this.find(ref);
    if (!row) throw new TernError('not_found', `user ${ref} does not exist`);
    return row;
  }

  async count(): Promise<number> {
    const r = await this.#db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /** The groups a user belongs to, and the roles they give. */
  async groupsOf(userId: string): Promise<{ name: string; role: string }[]> {
    return this.#db
      .selectFrom('userGroupMembers')
      .innerJoin('userGroups', 'userGroups.name', 'userGroupMembers.groupName')
      .select(['userGroups.name', 'userGroups.role'])
      .where('userGroupMembers.userId', '=', userId)
      .orderBy('userGroups.name')
      .execute();
  }

  async rolesOf(row: UserRow): Promise<Role[]> {
    return rolesFrom(row, await this.groupsOf(row.id));
  }

  async toWire(row: UserRow): Promise<User> {
    const groups = await this.groupsOf(row.id);
    return {
      id: row.id,
      name: row.name,
      displayName: row.displayName,
      source: row.source === 'ldap' ? 'ldap' : 'local',
      role: row.role !== null && isRole(row.role) ? row.role : null,
      groups: groups.map((g) => g.name),
      roles: rolesFrom(row, groups),
      disabled: row.disabled === 1,
      createdAt: row.createdAt,
      lastLoginAt: row.lastLoginAt,
    };
  }

  /** User names by id, for showing who owns something. */
  async names(): Promise<Map<string, string>> {
    const rows = await this.#db.selectFrom('users').select(['id', 'name']).execute();
    return new Map(rows.map((r) => [r.id, r.name]));
  }

  async list(): Promise<User[]> {
    const rows = await this.#db.selectFrom('users').selectAll().orderBy('name').execute();
    return Promise.all(rows.map((r) => this.toWire(r)));
  }

  async update(
    ref: string,
    change: { displayName?: string; password?: string; role?: Role | null; disabled?: boolean },
  ): Promise<UserRow> {
    const row = await this.get(ref);
    if (change.password !== undefined && row.source !== 'local')
      throw new TernError(
        'invalid_request',
        `user ${row.name} logs in through the directory; change the password there`,
      );
    const passwordHash = change.password !== undefined ? await hashPassword(change.password) : undefined;
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .updateTable('users')
        .set({
          ...(change.displayName !== undefined ? { displayName: change.displayName } : {}),
          ...(passwordHash !== undefined ? { passwordHash } : {}),
          ...(change.role !== undefined ? { role: change.role } : {}),
          ...(change.disabled !== undefined ? { disabled: change.disabled ? 1 : 0 } : {}),
        })
        .where('id', '=', row.id)
        .execute();
      await keepAnAdmin(trx, `changing ${row.name}`);
      // A new password or a disabled account ends every session it had.
      if (passwordHash !== undefined || change.disabled === true)
        await trx.deleteFrom('sessions').where('userId', '=', row.id).execute();
    });
    return this.get(row.id);
  }

  async remove(ref: string): Promise<void> {
    const row = await this.get(ref);
    await this.#db.transaction().execute(async (trx) => {
      await trx.updateTable('apiTokens').set({ revokedAt: now() }).where('userId', '=', row.id).execute();
      await trx.deleteFrom('users').where('id', '=', row.id).execute();
      await keepAnAdmin(trx, `removing ${row.name}`);
    });
  }

  async recordLogin(userId: string): Promise<void> {
    await this.#db.updateTable('users').set({ lastLoginAt: now() }).where('id', '=', userId).execute();
  }
}
