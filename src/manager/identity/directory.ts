import type { DirectorySettings } from '../../wire/identity.ts';
import type { Db } from '../db/database.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { LdapAuthConfig } from './ldap.ts';

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
