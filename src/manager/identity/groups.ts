/**
 * Groups give their members a role. A group mapped onto a directory group (`ldapGroup`) has
 * its membership set from the directory at each login of its users.
 */
import { TernError } from '../../errors.ts';
import type { Group } from '../../wire/identity.ts';
import type { Role } from '../../wire/permissions.ts';
import { isRole } from '../../wire/permissions.ts';
import { type Db, now } from '../db/database.ts';
import { keepAnAdmin } from './admins.ts';

export class GroupStore {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  async create(g: { name: string; role: Role; ldapGroup?: string }): Promise<Group> {
    const exists = await this.#db
      .selectFrom('userGroups')
      .select('name')
      .where('name', '=', g.name)
      .executeTakeFirst();
    if (exists) throw new TernError('conflict', `group ${g.name} already exists`);
    await this.#db
      .insertInto('userGroups')
      .values({ name: g.name, role: g.role, ldapGroup: g.ldapGroup ?? null, createdAt: now() })
      .execute();
    return this.get(g.name);
  }

  async get(name: string): Promise<Group> {
    const row = await this.#db
      .selectFrom('userGroups')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `group ${name} does not exist`);
    const members = await this.#db
      .selectFrom('userGroupMembers')
      .innerJoin('users', 'users.id', 'userGroupMembers.userId')
      .select('users.name')
      .where('userGroupMembers.groupName', '=', name)
      .orderBy('users.name')
      .execute();
    return {
      name: row.name,
      role: isRole(row.role) ? row.role : 'user',
      ldapGroup: row.ldapGroup,
      members: members.map((m) => m.name),
      createdAt: row.createdAt,
    };
  }

  async list(): Promise<Group[]> {
    const rows = await this.#db.selectFrom('userGroups').select('name').orderBy('name').execute();
    return Promise.all(rows.map((r) => this.get(r.name)));
  }

  /** The groups mapped onto a directory group, for directory logins. */
  async mapped(): Promise<{ name: string; ldapGroup: string }[]> {
    const rows = await this.#db
      .selectFrom('userGroups')
      .select(['name', 'ldapGroup'])
      .where('ldapGroup', 'is not', null)
      .execute();
    return rows.map((r) => ({ name: r.name, ldapGroup: r.ldapGroup as string }));
  }

  async remove(name: string): Promise<void> {
    await this.get(name);
    await this.#db.transaction().execute(async (trx) => {
      await trx.deleteFrom('userGroups').where('name', '=', name).execute();
      await keepAnAdmin(trx, `removing group ${name}`);
    });
  }

  async addMember(name: string, userId: string): Promise<void> {
    await this.get(name);
    await this.#db
      .insertInto('userGroupMembers')
      .values({ groupName: name, userId })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async removeMember(name: string, userId: string): Promise<void> {
    await this.#db.transaction().execute(async (trx) => {
      await trx
        .deleteFrom('userGroupMembers')
        .where('groupName', '=', name)
        .where('userId', '=', userId)
        .execute();
      await keepAnAdmin(trx, `removing a member of group ${name}`);
    });
  }

  /**
   * Sets a directory user's membership of the mapped groups to exactly `names`. The directory
   * is the truth here: this may take away the last admin, rather than keep rights it revoked.
   */
  async setMappedMembership(userId: string, names: string[]): Promise<void> {
    const mapped = (await this.mapped()).map((m) => m.name);
    await this.#db.transaction().execute(async (trx) => {
      if (mapped.length > 0)
        await trx
          .deleteFrom('userGroupMembers')
          .where('userId', '=', userId)
          .where('groupName', 'in', mapped)
          .execute();
      for (const groupName of names.filter((n) => mapped.includes(n)))
        await trx.insertInto('userGroupMembers').values({ groupName, userId }).execute();
    });
  }
}
