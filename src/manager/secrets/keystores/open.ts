/** Picks the key store a manager's configuration names. */
import type { KeyStore, KeyStoreConfig } from '../keystore.ts';
import { FileKeyStore } from './file.ts';
import { LdapKeyStore } from './ldap.ts';
import { PostgresKeyStore } from './postgres.ts';

export function openKeyStore(cfg: KeyStoreConfig): KeyStore {
  switch (cfg.kind) {
    case 'file':
      return new FileKeyStore(cfg.path);
    case 'ldap':
      return new LdapKeyStore(cfg);
    case 'postgres':
      return new PostgresKeyStore(cfg);
  }
}
