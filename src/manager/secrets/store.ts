/**
 * The manager's secrets (passwords, tokens, keys of VMs and integrations), encrypted at rest in
 * the `secrets` table with envelope encryption. The database holds only ciphertext and the ids
 * of the key-encryption keys; the keys themselves live in a key store elsewhere, so a copy of
 * the database alone reveals nothing.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { KeyStatus } from '../../wire/secret.ts';
import { type Db, now } from '../db/database.ts';
import type { SecretTable } from '../db/schema.ts';
import { exportKeys, restoreKeys } from './backup.ts';
import { open as openEnvelope, parseEnvelope, rewrap, seal } from './envelope.ts';
import {
  type KeyRecord,
  keyCheck,
  loadKeys,
  missingKey,
  newKek,
  readKeyRecord,
  readKeyStore,
  recorded,
  writeKeyRecord,
  wrongKey,
} from './keyring.ts';
import type { Kek, KeyStore } from './keystore.ts';

export type SecretMeta = Omit<SecretTable, 'envelope'>;

export interface PutOptions {
  kind: string;
  /** What the secret belongs to (`vm:<id>`); left as it was when replacing and not given. */
  object?: string | null;
  ownerId?: string | null;
}

const META = ['id', 'name', 'kind', 'object', 'ownerId', 'kekId', 'createdAt', 'updatedAt'] as const;
const REWRAP_BATCH = 100;

function checkName(name: string, what: string, max: number): void {
  if (typeof name !== 'string' || name.length === 0 || name.length > max || /\p{Cc}/u.test(name))
    throw new TernError('invalid_request', `a secret's ${what} must be 1 to ${max} printable characters`);
}

export class SecretStore {
  readonly #db: Db;
  readonly #store: KeyStore;
  readonly #log: Logger | undefined;
  readonly #ring: Map<string, Kek>;
  #record: KeyRecord;
  #rotating = false;

  private constructor(db: Db, store: KeyStore, ring: Kek[], record: KeyRecord, log?: Logger) {
    this.#db = db;
    this.#store = store;
    this.#ring = new Map(ring.map((k) => [k.id, k]));
    this.#record = record;
    this.#log = log;
  }

  /**
   * Checks that the key store holds every key the database's secrets need, or (on a fresh
   * database) sets up the first key. Refuses with 'unavailable' rather than start with secrets
   * it could not read.
   */
  static async open(db: Db, keyStore: KeyStore, log?: Logger): Promise<SecretStore> {
    const { keys, record } = await loadKeys(db, keyStore, log);
    return new SecretStore(db, keyStore, keys, record, log);
  }

  /** Adds to `keyStore` the keys of a backup it lacks (offline, when `open` refuses). */
  static restoreKeys(
    keyStore: KeyStore,
    blob: string,
    passphrase: string,
  ): Promise<{ added: string[]; present: string[] }> {
    return restoreKeys(keyStore, blob, passphrase);
  }

  get description(): string {
    return this.#store.description;
  }

  get activeKek(): string {
    return this.#record.active;
  }

  async put(name: string, value: string, opts: PutOptions): Promise<SecretMeta> {
    checkName(name, 'name', 255);
    checkName(opts.kind, 'kind', 64);
    if (typeof value !== 'string')
      throw new TernError('invalid_request', `secret ${name}: the value must be text`);
    await this.#kek(this.#record.active, name);
    return this.#db.transaction().execute(async (trx) => {
      // Chosen inside the transaction: a rotation's last pass runs after it and sees this row.
      const kek = this.#ring.get(this.#record.active)!;
      const old = await trx.selectFrom('secrets').select(META).where('name', '=', name).executeTakeFirst();
      const id = old?.id ?? randomUUID();
      const plain = Buffer.from(value, 'utf8');
      const envelope = JSON.stringify(seal(plain, kek, id));
      plain.fill(0);
      const ts = now();
      const meta: SecretMeta = {
        id,
        name,
        kind: opts.kind,
        object: opts.object === undefined ? (old?.object ?? null) : opts.object,
        ownerId: opts.ownerId === undefined ? (old?.ownerId ?? null) : opts.ownerId,
        kekId: kek.id,
        createdAt: old?.createdAt ?? ts,
        updatedAt: ts,
      };
      if (old) {
        const { id: _, createdAt: __, ...set } = meta;
        await trx
          .updateTable('secrets')
          .set({ ...set, envelope })
          .where('id', '=', id)
          .execute();
      } else
        await trx
          .insertInto('secrets')
          .values({ ...meta, envelope })
          .execute();
      return meta;
    });
  }

  async reveal(name: string): Promise<string> {
    const row = await this.#db
      .selectFrom('secrets')
      .select(['id', 'kekId', 'envelope'])
      .where('name', '=', name)
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `secret ${name} not found`);
    const env = parseEnvelope(row.envelope, name);
    if (env.kek !== row.kekId)
      throw new TernError(
        'internal',
        `secret ${name} cannot be decrypted: it was altered or sealed with another key`,
      );
    const plain = openEnvelope(env, await this.#kek(env.kek, name), row.id, name);
    try {
      return plain.toString('utf8');
    } finally {
      plain.fill(0);
    }
  }

  async get(name: string): Promise<SecretMeta | undefined> {
    return this.#db.selectFrom('secrets').select(META).where('name', '=', name).executeTakeFirst();
  }

  async list(filter: { object?: string; ownerId?: string } = {}): Promise<SecretMeta[]> {
    let q = this.#db.selectFrom('secrets').select(META).orderBy('name');
    if (filter.object !== undefined) q = q.where('object', '=', filter.object);
    if (filter.ownerId !== undefined) q = q.where('ownerId', '=', filter.ownerId);
    return q.execute();
  }

  /** True when there was such a secret. */
  async remove(name: string): Promise<boolean> {
    const r = await this.#db.deleteFrom('secrets').where('name', '=', name).executeTakeFirst();
    return r.numDeletedRows > 0n;
  }

  /** Removes every secret of an object (a VM being deleted); returns how many. */
  async removeFor(object: string): Promise<number> {
    const r = await this.#db.deleteFrom('secrets').where('object', '=', object).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  /**
   * Seals every secret's data key with a new key. The old keys stay in the store: backups of
   * the database taken before the rotation still need them. `failed` names the secrets that
   * could not be re-wrapped (damaged, or their key is gone); they stay as they were.
   */
  async rotate(): Promise<{ kek: string; rewrapped: number; failed: string[] }> {
    if (this.#rotating) throw new TernError('conflict', 'a key rotation is already running');
    this.#rotating = true;
    try {
      for (const k of await readKeyStore(this.#store)) this.#ring.set(k.id, k);
      this.#record = (await readKeyRecord(this.#db)) ?? this.#record;
      const kek = newKek();
      await this.#store.add(kek);
      this.#ring.set(kek.id, kek);
      // Recorded before any secret uses it, so a crash mid-way leaves a database that opens.
      this.#record = { ...this.#record, keys: [...this.#record.keys, recorded(kek)] };
      await writeKeyRecord(this.#db, this.#record);
      const failed = new Set<string>();
      let rewrapped = await this.#rewrapAll(kek, failed);
      this.#record = { ...this.#record, active: kek.id };
      await writeKeyRecord(this.#db, this.#record);
      // Secrets put during the first pass were sealed with the old key; none can be now.
      rewrapped += await this.#rewrapAll(kek, failed);
      this.#log?.info({ kek: kek.id, rewrapped, failed: failed.size }, 'rotated the secret key');
      return { kek: kek.id, rewrapped, failed: [...failed] };
    } finally {
      this.#rotating = false;
    }
  }

  async #rewrapAll(kek: Kek, failed: Set<string>): Promise<number> {
    let count = 0;
    let after = '';
    for (;;) {
      const rows = await this.#db
        .selectFrom('secrets')
        .select(['id', 'name', 'kekId', 'envelope'])
        .where('kekId', '!=', kek.id)
        .where('id', '>', after)
        .orderBy('id')
        .limit(REWRAP_BATCH)
        .execute();
      if (rows.length === 0) return count;
      after = rows.at(-1)!.id;
      const updates: { id: string; old: string; envelope: string }[] = [];
      for (const r of rows) {
        try {
          const env = parseEnvelope(r.envelope, r.name);
          const next = rewrap(env, await this.#kek(env.kek, r.name), kek, r.name);
          updates.push({ id: r.id, old: r.envelope, envelope: JSON.stringify(next) });
        } catch (err) {
          failed.add(r.name);
          this.#log?.warn({ secret: r.name, err: (err as Error).message }, 'cannot re-wrap a secret');
        }
      }
      count += await this.#db.transaction().execute(async (trx) => {
        let n = 0;
        for (const u of updates) {
          // Only if nobody replaced the value meanwhile: a concurrent put wins.
          const r = await trx
            .updateTable('secrets')
            .set({ kekId: kek.id, envelope: u.envelope })
            .where('id', '=', u.id)
            .where('envelope', '=', u.old)
            .executeTakeFirst();
          n += Number(r.numUpdatedRows);
        }
        return n;
      });
    }
  }

  async status(): Promise<KeyStatus> {
    let inStore: Kek[] = [];
    let storeError: string | null = null;
    try {
      inStore = await readKeyStore(this.#store);
    } catch (err) {
      storeError = (err as Error).message;
    }
    const counts = await this.#db
      .selectFrom('secrets')
      .select((eb) => ['kekId', eb.fn.countAll<number>().as('n')])
      .groupBy('kekId')
      .execute();
    const ids = new Set([...inStore.map((k) => k.id), ...this.#record.keys.map((k) => k.id)]);
    const keys = [...ids].map((id) => ({
      id,
      createdAt:
        inStore.find((k) => k.id === id)?.createdAt ??
        this.#record.keys.find((k) => k.id === id)?.createdAt ??
        null,
      active: id === this.#record.active,
      inStore: inStore.some((k) => k.id === id),
      secrets: Number(counts.find((c) => c.kekId === id)?.n ?? 0),
    }));
    keys.sort((a, b) => (a.createdAt ?? '').localeCompare(b.createdAt ?? ''));
    return { store: this.#store.description, storeError, activeKek: this.#record.active, keys };
  }

  /** A passphrase-sealed backup of every key in the store (and any this manager holds that it lost). */
  async exportKeys(passphrase: string): Promise<string> {
    const keys = new Map((await readKeyStore(this.#store)).map((k) => [k.id, k]));
    for (const k of this.#ring.values()) if (!keys.has(k.id)) keys.set(k.id, k);
    return exportKeys([...keys.values()], passphrase);
  }

  /** A key from the ring, or from the store if another manager added it since we opened. */
  async #kek(id: string, secret: string): Promise<Kek> {
    let kek = this.#ring.get(id);
    const mine = this.#record.keys.find((k) => k.id === id);
    if (!kek) {
      kek = (await readKeyStore(this.#store)).find((k) => k.id === id);
      if (kek && mine && keyCheck(kek.key) !== mine.check) throw wrongKey(id, this.#store);
      if (kek) this.#ring.set(id, kek);
    }
    if (!kek) {
      const err = missingKey(id, mine?.createdAt, this.#store);
      this.#log?.warn({ secret }, err.message);
      throw err;
    }
    return kek;
  }
}
