/**
 * The PostgreSQL key store against a real server: the key table is readable by the key role
 * only, the manager's own database role is refused, and a standby manager that connects with
 * the key role reads secrets the first manager sealed.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TernError } from '../src/errors.ts';
import { openDatabase } from '../src/manager/db/database.ts';
import { openKeyStore } from '../src/manager/secrets/keystores/open.ts';
import { PostgresKeyStore, postgresKeyTableSql } from '../src/manager/secrets/keystores/postgres.ts';
import { SecretStore } from '../src/manager/secrets/store.ts';
import { freePorts, tempDir } from './harness.ts';
import { startPostgres, type TestPostgres } from './postgres.ts';

let server: TestPostgres;
const MANAGER_PW = 'manager-pw-1';
const KEYHOLDER_PW = 'keyholder-pw-2';

before(async () => {
  server = await startPostgres();
  await server.sql(`CREATE ROLE tern_manager LOGIN PASSWORD '${MANAGER_PW}'`);
  await server.sql(`CREATE ROLE tern_keyholder LOGIN PASSWORD '${KEYHOLDER_PW}'`);
  for (const statement of postgresKeyTableSql('tern_keys.keks', 'tern_keyholder'))
    await server.sql(statement);
});

after(() => server?.stop());

const keyholder = () =>
  new PostgresKeyStore({ connectionString: server.url('tern_keyholder', KEYHOLDER_PW) });
const manager = () => new PostgresKeyStore({ connectionString: server.url('tern_manager', MANAGER_PW) });
const unavailable = (re: RegExp) => (err: unknown) =>
  err instanceof TernError && err.code === 'unavailable' && re.test(err.message);

test('the key role adds, lists and removes keys', async () => {
  const store = keyholder();
  assert.match(
    store.description,
    /^postgres postgres:\/\/tern_keyholder@127\.0\.0\.1:\d+\/postgres table tern_keys\.keks$/,
  );
  assert.ok(!store.description.includes(KEYHOLDER_PW));
  const kek = { id: 'kek-test-1', key: Buffer.alloc(32, 9), createdAt: '2025-03-04T05:06:07.089Z' };
  await store.add(kek);
  await assert.rejects(
    store.add({ ...kek, key: Buffer.alloc(32, 1) }),
    (e) => e instanceof TernError && e.code === 'conflict',
  );
  assert.deepEqual(await store.list(), [kek]);
  await store.remove(kek.id);
  await assert.rejects(store.remove(kek.id), /holds no key kek-test-1/);
  assert.deepEqual(await store.list(), []);
});

test("the manager's database role may not read the key table", async () => {
  const store = manager();
  await assert.rejects(
    store.list(),
    unavailable(
      /^key store postgres postgres:\/\/tern_manager@.* table tern_keys\.keks: the role tern_manager may not read the key table \(permission denied\)$/,
    ),
  );
  await assert.rejects(
    store.add({ id: 'kek-x', key: Buffer.alloc(32), createdAt: new Date().toISOString() }),
    unavailable(/permission denied/),
  );
});

test('a wrong password, a missing table and a closed port are clear and bounded', async () => {
  const wrong = new PostgresKeyStore({ connectionString: server.url('tern_keyholder', 'nope') });
  await assert.rejects(wrong.list(), unavailable(/refused the role tern_keyholder/));
  const missing = new PostgresKeyStore({
    connectionString: server.url('tern_keyholder', KEYHOLDER_PW),
    table: 'tern_keys.nothing_here',
  });
  await assert.rejects(missing.list(), unavailable(/key table does not exist/));
  const [closed] = await freePorts(1);
  const down = new PostgresKeyStore({
    connectionString: `postgres://tern_keyholder:x@127.0.0.1:${closed}/postgres`,
  });
  await assert.rejects(down.list(), unavailable(/cannot reach the server/));
  assert.throws(
    () => new PostgresKeyStore({ connectionString: server.adminUrl, table: 'x; drop' }),
    /not a \[schema\.\]table/,
  );
});

test('secrets sealed with keys in PostgreSQL reveal on a standby with the key role only', async () => {
  const dir = tempDir('tern-pgkeys');
  const dbFile = path.join(dir, 'manager.db');
  const db = await openDatabase(dbFile);
  const first = await SecretStore.open(
    db,
    openKeyStore({ kind: 'postgres', connectionString: server.url('tern_keyholder', KEYHOLDER_PW) }),
  );
  await first.put('ldap/bind-password', 'bind-secret-value', { kind: 'password', object: 'setting:ldap' });
  assert.equal(await first.reveal('ldap/bind-password'), 'bind-secret-value');
  assert.equal((await keyholder().list()).length, 1);

  // The standby: the same database, its own connection to the key store.
  const standbyDb = await openDatabase(dbFile);
  const standby = await SecretStore.open(standbyDb, keyholder());
  assert.equal(await standby.reveal('ldap/bind-password'), 'bind-secret-value');
  await assert.rejects(
    SecretStore.open(standbyDb, manager()),
    unavailable(/the role tern_manager may not read the key table/),
  );

  const rotated = await first.rotate();
  assert.equal(rotated.rewrapped, 1);
  assert.equal(
    await standby.reveal('ldap/bind-password'),
    'bind-secret-value',
    'the standby finds the new key in the store',
  );
  await db.destroy();
  await standbyDb.destroy();
  fs.rmSync(dir, { recursive: true, force: true });
});
