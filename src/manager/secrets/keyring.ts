/**
 * Which keys the database's secrets need, and whether the key store holds exactly those keys.
 * The database records each key's id and a check value (an HMAC under the key, which says
 * nothing about the key), so a manager pointed at the wrong store, or at a store that lost a
 * key, refuses to start with a message saying what to do instead of failing secret by secret.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { type Db, now } from '../db/database.ts';
import { KEK_ID, open as openEnvelope, parseEnvelope } from './envelope.ts';
import type { Kek, KeyStore } from './keystore.ts';

export const KEY_RECORD_SETTING = 'secrets.keks';

export interface RecordedKey {
  id: string;
  check: string;
  createdAt: string;
}

export interface KeyRecord {
  /** The key new secrets are sealed with. */
  active: string;
  keys: RecordedKey[];
}

export function keyCheck(key: Buffer): string {
  return createHmac('sha256', key).update('tern key check v1').digest('hex').slice(0, 16);
}

export function recorded(kek: Kek): RecordedKey {
  return { id: kek.id, check: keyCheck(kek.key), createdAt: kek.createdAt };
}

export function newKek(): Kek {
  const createdAt = now();
  const day = createdAt.slice(0, 10).replaceAll('-', '');
  return { id: `kek-${day}-${randomBytes(3).toString('hex')}`, key: randomBytes(32), createdAt };
}

/** The store's keys; any failure becomes 'unavailable' naming the store. */
export async function readKeyStore(store: KeyStore): Promise<Kek[]> {
  try {
    return await store.list();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (err instanceof TernError && err.code === 'unavailable' && message.includes(store.description))
      throw err;
    throw new TernError(
      'unavailable',
      `cannot read the keys of key store ${store.description}: ${message}; make it reachable for the manager, or point the manager at its key store`,
    );
  }
}

export async function readKeyRecord(db: Db): Promise<KeyRecord | undefined> {
  const row = await db
    .selectFrom('settings')
    .select('value')
    .where('key', '=', KEY_RECORD_SETTING)
    .executeTakeFirst();
  if (!row) return undefined;
  const damaged = () =>
    new TernError(
      'internal',
      `the database's record of its secret keys (setting ${KEY_RECORD_SETTING}) is damaged`,
    );
  let o: Partial<KeyRecord>;
  try {
    o = JSON.parse(row.value);
  } catch {
    throw damaged();
  }
  if (!o || typeof o.active !== 'string' || !Array.isArray(o.keys)) throw damaged();
  for (const k of o.keys)
    if (
      typeof k?.id !== 'string' ||
      !KEK_ID.test(k.id) ||
      typeof k.check !== 'string' ||
      !/^[0-9a-f]{16}$/.test(k.check) ||
      typeof k.createdAt !== 'string'
    )
      throw damaged();
  return {
    active: o.active,
    keys: o.keys.map((k) => ({ id: k.id, check: k.check, createdAt: k.createdAt })),
  };
}

export async function writeKeyRecord(db: Db, record: KeyRecord): Promise<void> {
  const value = JSON.stringify(record);
  await db
    .insertInto('settings')
    .values({ key: KEY_RECORD_SETTING, value })
    .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
    .execute();
}

const remedy =
  'point the manager at its key store, or restore the keys from a backup (tern-manager keys restore)';

export function missingKey(id: string, createdAt: string | undefined, store: KeyStore): TernError {
  const created = createdAt ? ` (created ${createdAt})` : '';
  return new TernError(
    'unavailable',
    `the database's secrets are sealed with key ${id}${created}, which the key store ${store.description} does not hold: ${remedy}`,
  );
}

export function wrongKey(id: string, store: KeyStore): TernError {
  return new TernError(
    'unavailable',
    `the key store ${store.description} holds a key named ${id}, but not the one the database's secrets are sealed with (its check value differs): ${remedy}`,
  );
}

/**
 * The store's keys and the database's record of the keys it needs, after checking that the
 * store holds each of them; on a fresh database, sets up the first key.
 */
export async function loadKeys(
  db: Db,
  keyStore: KeyStore,
  log?: Logger,
): Promise<{ keys: Kek[]; record: KeyRecord }> {
  const keys = await readKeyStore(keyStore);
  const byId = new Map(keys.map((k) => [k.id, k]));
  let record = await readKeyRecord(db);
  const used = await db
    .selectFrom('secrets')
    .select((eb) => ['kekId', eb.fn.min('id').as('sample')])
    .groupBy('kekId')
    .execute();

  if (!record && used.length === 0) {
    // A fresh database: a store shared with other managers may already hold a key to adopt.
    let kek = keys.at(-1);
    if (!kek) {
      kek = newKek();
      await keyStore.add(kek);
      keys.push(kek);
      log?.info({ kek: kek.id, store: keyStore.description }, 'created the first secret key');
    }
    record = { active: kek.id, keys: [recorded(kek)] };
    await writeKeyRecord(db, record);
    return { keys, record };
  }

  // Without a record (it was lost) the newest key in use becomes the active one.
  record ??= { active: '', keys: [] };
  const required = new Set([...(record.active ? [record.active] : []), ...used.map((u) => u.kekId)]);
  let changed = false;
  for (const id of required) {
    const mine = record.keys.find((k) => k.id === id);
    const kek = byId.get(id);
    if (!kek) throw missingKey(id, mine?.createdAt, keyStore);
    if (mine) {
      if (keyCheck(kek.key) !== mine.check) throw wrongKey(id, keyStore);
      continue;
    }
    // Not recorded: prove the key by opening one secret it wraps before trusting it.
    const sample = used.find((u) => u.kekId === id)?.sample;
    const row = sample
      ? await db.selectFrom('secrets').select(['id', 'envelope']).where('id', '=', sample).executeTakeFirst()
      : undefined;
    try {
      if (row) openEnvelope(parseEnvelope(row.envelope, row.id), kek, row.id).fill(0);
    } catch {
      throw wrongKey(id, keyStore);
    }
    record.keys.push(recorded(kek));
    changed = true;
  }
  if (!record.active) {
    record.active = record.keys.toSorted((a, b) => a.createdAt.localeCompare(b.createdAt)).at(-1)!.id;
    changed = true;
  }
  for (const k of record.keys)
    if (!byId.has(k.id) && !required.has(k.id))
      log?.warn(
        { kek: k.id, store: keyStore.description },
        'a secret key no current secret uses is missing from the key store; older database backups need it',
      );
  if (changed) await writeKeyRecord(db, record);
  return { keys, record };
}
