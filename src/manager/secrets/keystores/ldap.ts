/**
 * Key-encryption keys in an LDAP / Active Directory container whose ACL lets only the manager's
 * service account in. Each key is an `applicationProcess` entry (in every directory's core
 * schema, AD's too) named `cn=<id>` whose `description` is `tern-kek:v1:<createdAt>:<base64>`.
 * Every call binds afresh, so a directory failover or a rotated replica needs nothing from us.
 * The directory may be shared with other applications, so whatever the container holds is read
 * strictly: an entry that is not a well-formed Tern key stops the read rather than being skipped.
 */
import {
  AlreadyExistsError,
  Client,
  type Entry,
  InsufficientAccessError,
  NoSuchObjectError,
  ResultCodeError,
} from 'ldapts';
import { TernError, unreachable } from '../../../errors.ts';
import type { Kek, KeyStore, KeyStoreConfig } from '../keystore.ts';

type LdapKeyStoreConfig = Extract<KeyStoreConfig, { kind: 'ldap' }>;

const prefix = 'tern-kek:v1:';
const keyBytes = 32;
/** Ids go into a DN unescaped, so they are kept to characters no DN or filter treats specially. */
const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const maxKeys = 1000;
const isoPattern = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const base64Pattern = /^[A-Za-z0-9+/]+={0,2}$/;

export class LdapKeyStore implements KeyStore {
  readonly description: string;
  readonly #cfg: LdapKeyStoreConfig;
  readonly #timeoutMs: number;

  constructor(cfg: LdapKeyStoreConfig, options: { timeoutMs?: number } = {}) {
    this.#cfg = cfg;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
    this.description = `ldap ${cfg.url} ${cfg.baseDn}`;
  }

  async list(): Promise<Kek[]> {
    return this.#session(async (client) => {
      let entries: Entry[];
      try {
        ({ searchEntries: entries } = await client.search(this.#cfg.baseDn, {
          scope: 'one',
          filter: '(objectClass=*)',
          attributes: ['objectClass', 'cn', 'description'],
          sizeLimit: maxKeys + 1,
        }));
      } catch (err) {
        throw this.#failed('may not read the keys', err);
      }
      if (entries.length > maxKeys)
        throw new TernError('protocol_error', `key store ${this.description}: more than ${maxKeys} entries`);
      const keks = entries.map((e) => this.#parse(e));
      return keks.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    });
  }

  async add(kek: Kek): Promise<void> {
    if (!idPattern.test(kek.id))
      throw new TernError(
        'invalid_request',
        `key store ${this.description}: ${JSON.stringify(kek.id)} is no key id`,
      );
    if (!Buffer.isBuffer(kek.key) || kek.key.length !== keyBytes)
      throw new TernError('invalid_request', `key store ${this.description}: a key is ${keyBytes} bytes`);
    if (!isoPattern.test(kek.createdAt) || new Date(kek.createdAt).toISOString() !== kek.createdAt)
      throw new TernError(
        'invalid_request',
        `key store ${this.description}: createdAt ${JSON.stringify(kek.createdAt)} is no ISO time`,
      );
    await this.#session(async (client) => {
      try {
        await client.add(this.#dn(kek.id), {
          objectClass: 'applicationProcess',
          cn: kek.id,
          description: `${prefix}${kek.createdAt}:${kek.key.toString('base64')}`,
        });
      } catch (err) {
        if (err instanceof AlreadyExistsError)
          throw new TernError('conflict', `key store ${this.description}: a key ${kek.id} is already there`);
        throw this.#failed('may not write the keys', err);
      }
    });
  }

  async remove(id: string): Promise<void> {
    if (!idPattern.test(id))
      throw new TernError(
        'invalid_request',
        `key store ${this.description}: ${JSON.stringify(id)} is no key id`,
      );
    await this.#session(async (client) => {
      try {
        await client.del(this.#dn(id));
      } catch (err) {
        // The container is visible (#session checked), so a missing entry is a missing key.
        if (err instanceof NoSuchObjectError)
          throw new TernError('not_found', `key store ${this.description}: no key ${id}`);
        throw this.#failed('may not write the keys', err);
      }
    });
  }

  async close(): Promise<void> {
    // Nothing stays open between calls.
  }

  #dn(id: string): string {
    return `cn=${id},${this.#cfg.baseDn}`;
  }

  /**
   * Binds as the service account and checks the container itself is visible, so that a
   * container hidden by its ACL (which directories answer like an empty one, or as missing)
   * is a refusal and never an empty key list.
   */
  async #session<T>(work: (client: Client) => Promise<T>): Promise<T> {
    const client = new Client({
      url: this.#cfg.url,
      timeout: this.#timeoutMs,
      connectTimeout: this.#timeoutMs,
    });
    try {
      try {
        await client.bind(this.#cfg.bindDn, this.#cfg.bindPassword);
      } catch (err) {
        throw this.#failed('may not read the keys', err, 'bind refused: ');
      }
      let visible: boolean;
      try {
        const base = await client.search(this.#cfg.baseDn, {
          scope: 'base',
          filter: '(objectClass=*)',
          attributes: ['1.1'],
        });
        visible = base.searchEntries.length === 1;
      } catch (err) {
        throw this.#failed('may not read the keys', err);
      }
      if (!visible)
        throw new TernError(
          'unavailable',
          `key store ${this.description}: the account ${this.#cfg.bindDn} may not read the keys (the container is hidden from it)`,
        );
      return await work(client);
    } finally {
      await client.unbind().catch(() => {});
    }
  }

  /** Any failure to reach or use the container, as the one error callers handle. */
  #failed(what: string, err: unknown, lead = ''): TernError {
    if (err instanceof TernError) return err;
    let why: string;
    if (err instanceof NoSuchObjectError) why = 'the container is missing or hidden from it';
    else if (err instanceof InsufficientAccessError) why = 'insufficient access rights';
    else if (err instanceof ResultCodeError) why = `${lead}${err.message}`;
    else return unreachable(err, (w) => `key store ${this.description}: the directory did not answer: ${w}`);
    return new TernError(
      'unavailable',
      `key store ${this.description}: the account ${this.#cfg.bindDn} ${what} (${why})`,
    );
  }

  #parse(entry: Entry): Kek {
    const bad = (why: string) =>
      new TernError(
        'protocol_error',
        `key store ${this.description}: ${entry.dn} is not a Tern key (${why})`,
      );
    const one = (attr: string): string => {
      const key = Object.keys(entry).find((k) => k.toLowerCase() === attr);
      const v = key === undefined ? [] : entry[key];
      const list = Array.isArray(v) ? v : [v];
      if (list.length !== 1) throw bad(`${list.length} ${attr} values`);
      const s = list[0];
      return Buffer.isBuffer(s) ? s.toString('utf8') : s;
    };
    const classes = Object.entries(entry).find(([k]) => k.toLowerCase() === 'objectclass')?.[1];
    const classList = (Array.isArray(classes) ? classes : [classes]).map((c) => String(c).toLowerCase());
    if (!classList.includes('applicationprocess')) throw bad('not an applicationProcess');
    const id = one('cn');
    if (!idPattern.test(id)) throw bad(`cn ${JSON.stringify(id.slice(0, 80))} is no key id`);
    const description = one('description');
    if (!description.startsWith(prefix)) throw bad(`description does not start with ${prefix}`);
    const rest = description.slice(prefix.length);
    const colon = rest.lastIndexOf(':');
    const createdAt = rest.slice(0, colon);
    const b64 = rest.slice(colon + 1);
    if (colon < 0 || !isoPattern.test(createdAt) || Number.isNaN(Date.parse(createdAt)))
      throw bad('no creation time');
    const key = Buffer.from(b64, 'base64');
    if (!base64Pattern.test(b64) || key.toString('base64') !== b64 || key.length !== keyBytes)
      throw bad(`the key is not ${keyBytes} bytes of base64`);
    return { id, key, createdAt };
  }
}
