/**
 * The directory (LDAP / Active Directory) people may log in through: its settings live in
 * the database, its service account's password as a secret, never in plaintext.
 */
import { type Static, Type } from 'typebox';
import type { Db } from '../db/database.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { LdapAuthConfig } from './ldap.ts';

export const DirectorySettings = Type.Object(
  {
    url: Type.String({ pattern: '^ldaps?://', maxLength: 500 }),
    bindDn: Type.String({ minLength: 1, maxLength: 1024 }),
    userBase: Type.String({ minLength: 1, maxLength: 1024 }),
    userFilter: Type.String({
      minLength: 1,
      maxLength: 1024,
      description: '{user} stands for the escaped name: (uid={user}), AD (sAMAccountName={user})',
    }),
    groupBase: Type.Optional(Type.String({ maxLength: 1024 })),
    groupFilter: Type.Optional(Type.String({ maxLength: 1024, description: '{dn}: the user’s DN' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
  },
  { additionalProperties: false },
);
export type DirectorySettings = Static<typeof DirectorySettings>;

const key = 'identity.ldap';
export const passwordSecret = 'ldap-bind-password';

export class Directory {
  readonly #db: Db;
  readonly #secrets: SecretStore;

  constructor(db: Db, secrets: SecretStore) {
    this.#db = db;
    this.#secrets = secrets;
  }

  async settings(): Promise<DirectorySettings | null> {
    const row = await this.#db
      .selectFrom('settings')
      .select('value')
      .where('key', '=', key)
      .executeTakeFirst();
    return row ? (JSON.parse(row.value) as DirectorySettings) : null;
  }

  /** The settings with the service account's password, for a login; null when unset. */
  async config(): Promise<LdapAuthConfig | null> {
    const s = await this.settings();
    return s ? { ...s, bindPassword: await this.#secrets.reveal(passwordSecret) } : null;
  }

  async set(s: DirectorySettings, bindPassword: string): Promise<void> {
    await this.#secrets.put(passwordSecret, bindPassword, {
      kind: 'credential',
      object: 'setting:ldap',
      ownerId: null,
    });
    const value = JSON.stringify(s);
    await this.#db
      .insertInto('settings')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }

  async clear(): Promise<void> {
    await this.#db.deleteFrom('settings').where('key', '=', key).execute();
    await this.#secrets.remove(passwordSecret);
  }
}
