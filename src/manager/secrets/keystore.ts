/**
 * Where the key-encryption keys live: never in the database. One interface, three stores:
 * a 0600 file (the default), an LDAP / Active Directory container readable only by the
 * manager's service account, and a PostgreSQL table readable only by a separate role. Every
 * manager of a cluster points at the same store, so a standby can decrypt after a failover.
 */

import fs from 'node:fs';
import { Type } from 'typebox';
import { Value } from 'typebox/value';

/** A key-encryption key: 32 random bytes (AES-256), named by an id that never changes. */
export interface Kek {
  id: string;
  key: Buffer;
  createdAt: string;
}

export interface KeyStore {
  /** Where the keys are, for messages: `file /etc/tern/keys.json`, `ldap ldap://… ou=…`. */
  readonly description: string;
  /**
   * Every key the store holds, oldest first. Throws TernError('keystore_unavailable') when
   * the store cannot be reached or refuses this manager; an empty list means reachable but empty.
   */
  list(): Promise<Kek[]>;
  /** Adds a key; a key with the same id already there is an error, never replaced. */
  add(kek: Kek): Promise<void>;
  /** Removes a key that no secret uses any more. */
  remove(id: string): Promise<void>;
  close(): Promise<void>;
}

export type KeyStoreConfig =
  | { kind: 'file'; path: string }
  | {
      kind: 'ldap';
      /** ldap:// or ldaps:// */
      url: string;
      /** The manager's service account, the only one the container's ACL lets read. */
      bindDn: string;
      bindPassword: string;
      /** The container that holds the keys, e.g. `ou=tern-keys,dc=example,dc=org`. */
      baseDn: string;
    }
  | {
      kind: 'postgres';
      connectionString: string;
      /** Schema-qualified table name (default `tern_keys.keks`). */
      table?: string;
    };

const KeyStoreConfigSchema = Type.Union([
  Type.Object(
    { kind: Type.Literal('file'), path: Type.String({ minLength: 1 }) },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal('ldap'),
      url: Type.String({ pattern: '^ldaps?://' }),
      bindDn: Type.String({ minLength: 1 }),
      bindPassword: Type.String({ minLength: 1 }),
      baseDn: Type.String({ minLength: 1 }),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal('postgres'),
      connectionString: Type.String({ minLength: 1 }),
      table: Type.Optional(Type.String()),
    },
    { additionalProperties: false },
  ),
]);

/**
 * A key store's settings from a JSON file. It holds the store's password, so, like a key
 * file, it must be readable by its owner only.
 */
export function readKeyStoreConfig(file: string): KeyStoreConfig {
  let text: string;
  try {
    if ((fs.statSync(file).mode & 0o077) !== 0)
      throw new Error(`${file} may be read by others; chmod 600 it, it holds the key store's password`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`key store settings ${file}: ${(err as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`key store settings ${file}: not JSON`);
  }
  if (!Value.Check(KeyStoreConfigSchema, v)) {
    const first = [...Value.Errors(KeyStoreConfigSchema, v)][0];
    throw new Error(
      `key store settings ${file}: ${first ? `${first.instancePath || '/'} ${first.message}` : 'invalid'} (kind: file, ldap or postgres)`,
    );
  }
  return v as KeyStoreConfig;
}
