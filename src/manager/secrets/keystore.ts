/**
 * Where the key-encryption keys live: never in the database. One interface, three stores:
 * a 0600 file (the default), an LDAP / Active Directory container readable only by the
 * manager's service account, and a PostgreSQL table readable only by a separate role. Every
 * manager of a cluster points at the same store, so a standby can decrypt after a failover.
 */

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
