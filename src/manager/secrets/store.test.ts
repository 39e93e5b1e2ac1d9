import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TernError } from '../../errors.ts';
import { type Db, openDatabase } from '../db/database.ts';
import { FileKeyStore } from './keystores/file.ts';
import { SecretStore } from './store.ts';

const dirs: string[] = [];
const tmp = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-secrets-'));
  dirs.push(dir);
  return dir;
};
after(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function setup(): Promise<{
  dir: string;
  dbFile: string;
  keyFile: string;
  db: Db;
  store: SecretStore;
}> {
  const dir = tmp();
  const dbFile = path.join(dir, 'manager.db');
  const keyFile = path.join(dir, 'keys', 'keys.json');
  const db = await openDatabase(dbFile);
  const store = await SecretStore.open(db, new FileKeyStore(keyFile));
  return { dir, dbFile, keyFile, db, store };
}

const unavailable = (re: RegExp) => (err: unknown) =>
  err instanceof TernError && err.code === 'unavailable' && re.test(err.message);

test('secrets are revealed by name and never stored in the clear', async (t) => {
  const { dbFile, keyFile, db, store } = await setup();
  t.after(() => db.destroy());
  const plaintext = 'PLAINTEXT-canary-7f3a9c';
  const meta = await store.put('vm-1/root-password', plaintext, { kind: 'password', object: 'vm:1' });
  assert.equal(meta.name, 'vm-1/root-password');
  assert.equal(meta.object, 'vm:1');
  assert.equal(meta.kekId, store.activeKek);
  assert.equal(await store.reveal('vm-1/root-password'), plaintext);
  for (const f of [dbFile, `${dbFile}-wal`])
    if (fs.existsSync(f)) assert.ok(!fs.readFileSync(f).includes(plaintext), `${f} holds the plaintext`);
  assert.ok(fs.existsSync(`${dbFile}-wal`));
  assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(fs.statSync(path.dirname(keyFile)).mode & 0o777, 0o700);
  assert.ok(!('envelope' in meta));
});

test('put replaces, list and remove see metadata only', async (t) => {
  const { db, store } = await setup();
  t.after(() => db.destroy());
  const first = await store.put('a', 'one', { kind: 'token', object: 'vm:1', ownerId: 'u1' });
  const second = await store.put('a', 'two', { kind: 'token' });
  assert.equal(second.id, first.id);
  assert.equal(second.object, 'vm:1', 'kept when not given');
  assert.equal(await store.reveal('a'), 'two');
  await store.put('b', 'x', { kind: 'token', object: 'vm:1' });
  await store.put('c', 'y', { kind: 'token', object: 'vm:2', ownerId: 'u1' });
  assert.deepEqual(
    (await store.list({ object: 'vm:1' })).map((s) => s.name),
    ['a', 'b'],
  );
  assert.deepEqual(
    (await store.list({ ownerId: 'u1' })).map((s) => s.name),
    ['a', 'c'],
  );
  assert.ok(!JSON.stringify(await store.list()).includes('envelope'));
  assert.equal(await store.removeFor('vm:1'), 2);
  assert.equal(await store.remove('c'), true);
  assert.equal(await store.remove('c'), false);
  assert.equal(await store.get('a'), undefined);
  await assert.rejects(store.reveal('a'), /secret a not found/);
  await assert.rejects(store.put('', 'x', { kind: 'token' }), /1 to 255 printable/);
});

test('rotation re-wraps every secret, keeps old keys, and everything still reveals', async (t) => {
  const { db, keyFile, store } = await setup();
  t.after(() => db.destroy());
  const before = store.activeKek;
  const names = Array.from({ length: 250 }, (_, i) => `s-${i}`);
  for (const n of names) await store.put(n, `value of ${n}`, { kind: 'token' });
  const cts = new Map(
    (await db.selectFrom('secrets').select(['name', 'envelope']).execute()).map((r) => [r.name, r.envelope]),
  );

  const r = await store.rotate();
  assert.notEqual(r.kek, before);
  assert.equal(r.rewrapped, names.length);
  assert.deepEqual(r.failed, []);
  assert.equal(store.activeKek, r.kek);
  const rows = await db.selectFrom('secrets').select(['name', 'kekId', 'envelope']).execute();
  for (const row of rows) {
    assert.equal(row.kekId, r.kek);
    assert.equal(
      JSON.parse(row.envelope).ct,
      JSON.parse(cts.get(row.name)!).ct,
      'value ciphertext untouched',
    );
  }
  for (const n of names) assert.equal(await store.reveal(n), `value of ${n}`);

  const status = await store.status();
  assert.equal(status.activeKek, r.kek);
  assert.equal(status.storeError, null);
  assert.deepEqual(
    status.keys.map((k) => [k.id, k.inStore, k.active, k.secrets]),
    [
      [before, true, false, 0],
      [r.kek, true, true, names.length],
    ],
  );
  assert.equal(JSON.parse(fs.readFileSync(keyFile, 'utf8')).keys.length, 2);
});

test('a second open of the same database and key file reveals; an empty key file refuses', async (t) => {
  const { dir, dbFile, keyFile, db, store } = await setup();
  await store.put('db-password', 's3cret', { kind: 'password' });
  await store.rotate();
  await store.put('later', 'l8r', { kind: 'password' });
  await db.destroy();

  const db2 = await openDatabase(dbFile);
  t.after(() => db2.destroy());
  const again = await SecretStore.open(db2, new FileKeyStore(keyFile));
  assert.equal(await again.reveal('db-password'), 's3cret');
  assert.equal(await again.reveal('later'), 'l8r');

  const empty = path.join(dir, 'other', 'keys.json');
  await assert.rejects(
    SecretStore.open(db2, new FileKeyStore(empty)),
    unavailable(
      new RegExp(
        `the database's secrets are sealed with key kek-\\d{8}-[0-9a-f]{6} \\(created .*\\), which the key store file ${empty} does not hold: point the manager at its key store, or restore the keys from a backup \\(tern-manager keys restore\\)`,
      ),
    ),
  );
});

test('a key store with the right key id but another key is refused', async (t) => {
  const { dir, keyFile, db, store } = await setup();
  t.after(() => db.destroy());
  await store.put('x', 'y', { kind: 'token' });
  const forged = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
  forged.keys[0].key = Buffer.alloc(32, 7).toString('base64');
  const other = path.join(dir, 'forged.json');
  fs.writeFileSync(other, JSON.stringify(forged), { mode: 0o600 });
  await assert.rejects(SecretStore.open(db, new FileKeyStore(other)), unavailable(/check value differs/));
});

test('a tampered or moved envelope fails clearly', async (t) => {
  const { db, store } = await setup();
  t.after(() => db.destroy());
  await store.put('one', 'first', { kind: 'token' });
  await store.put('two', 'second', { kind: 'token' });
  const one = await db
    .selectFrom('secrets')
    .select('envelope')
    .where('name', '=', 'one')
    .executeTakeFirstOrThrow();
  await db.updateTable('secrets').set({ envelope: one.envelope }).where('name', '=', 'two').execute();
  await assert.rejects(
    store.reveal('two'),
    /secret two cannot be decrypted: it was altered or sealed with another key/,
  );
  const env = JSON.parse(one.envelope);
  const ct = Buffer.from(env.ct, 'base64');
  ct[0] ^= 1;
  await db
    .updateTable('secrets')
    .set({ envelope: JSON.stringify({ ...env, ct: ct.toString('base64') }) })
    .where('name', '=', 'one')
    .execute();
  await assert.rejects(store.reveal('one'), /secret one cannot be decrypted: it was altered/);
  await db.updateTable('secrets').set({ envelope: '{"v":1}' }).where('name', '=', 'one').execute();
  await assert.rejects(store.reveal('one'), /secret one (is damaged|cannot be decrypted)/);
});

test('keys restored from a backup into an empty store open the database again', async (t) => {
  const { dir, dbFile, db, store } = await setup();
  await store.put('p', 'restored value', { kind: 'password' });
  await store.rotate();
  const blob = await store.exportKeys('correct horse battery staple');
  await db.destroy();

  const db2 = await openDatabase(dbFile);
  t.after(() => db2.destroy());
  const fresh = new FileKeyStore(path.join(dir, 'new-keys', 'keys.json'));
  await assert.rejects(SecretStore.open(db2, fresh), unavailable(/does not hold/));
  await assert.rejects(
    SecretStore.restoreKeys(fresh, blob, 'wrong horse battery staple'),
    /wrong passphrase/,
  );
  const r = await SecretStore.restoreKeys(fresh, blob, 'correct horse battery staple');
  assert.equal(r.added.length, 2);
  assert.deepEqual(r.present, []);
  const again = await SecretStore.restoreKeys(fresh, blob, 'correct horse battery staple');
  assert.deepEqual(again.added, []);
  const reopened = await SecretStore.open(db2, fresh);
  assert.equal(await reopened.reveal('p'), 'restored value');
});

test('the key file is refused when others may read it, and missing means empty', async () => {
  const dir = tmp();
  const file = path.join(dir, 'keys.json');
  const store = new FileKeyStore(file);
  assert.deepEqual(await store.list(), []);
  await store.add({ id: 'kek-1', key: Buffer.alloc(32, 1), createdAt: '2025-01-01T00:00:00.000Z' });
  await assert.rejects(
    store.add({ id: 'kek-1', key: Buffer.alloc(32, 2), createdAt: '2025-01-01T00:00:00.000Z' }),
    /already holds a key kek-1/,
  );
  fs.chmodSync(file, 0o644);
  await assert.rejects(store.list(), unavailable(new RegExp(`file ${file}.*chmod 600 ${file}`)));
  fs.chmodSync(file, 0o600);
  assert.equal((await store.list()).length, 1);
  fs.writeFileSync(file, '{"format":"tern-keys","v":1,"keys":[{"id":"x","key":"AAAA","createdAt":""}]}');
  await assert.rejects(store.list(), unavailable(/entry 1 of the key file is not a valid key/));
  const blocked = new FileKeyStore(path.join(file, 'below-a-file', 'keys.json'));
  await assert.rejects(blocked.list(), unavailable(/cannot/));
  assert.deepEqual(
    fs.readdirSync(dir).filter((f) => f.includes('.tmp-')),
    [],
  );
});
