/**
 * Secrets at rest and the failover case, against a real slapd: a manager whose keys live in
 * an LDAP container stores secrets the raw SQLite file does not reveal; a second manager on
 * the same database and key store reads them and logs people in through the directory; one
 * whose account the container's ACL refuses, or with an empty key file, does not start.
 * Rotation re-wraps every secret; a key backup restored offline brings a lost store back.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { issueAdminToken } from '../src/manager/auth/bootstrap.ts';
import type { KeyStoreConfig } from '../src/manager/secrets/keystore.ts';
import { LdapKeyStore } from '../src/manager/secrets/keystores/ldap.ts';
import { type RunningManager, startManager } from '../src/manager/start.ts';
import type { Whoami } from '../src/wire/identity.ts';
import { repoRoot, TestApi, tempDir } from './harness.ts';
import { type Slapd, startSlapd } from './slapd.ts';

const silent = pino({ level: 'silent' });
let s: Slapd;
let dir: string;
const database = () => path.join(dir, 'db', 'tern.db');
const canary = `canary-${randomBytes(12).toString('hex')}`;
const bindCanary = `bind-${randomBytes(12).toString('hex')}`;

const ldapStore = (who: 'manager' | 'other'): KeyStoreConfig => ({
  kind: 'ldap',
  url: s.url,
  bindDn: who === 'manager' ? s.managerDn : s.otherDn,
  bindPassword: who === 'manager' ? s.managerPassword : s.otherPassword,
  baseDn: s.keysDn,
});

/** The secrets and the record of their keys, as the database holds them. */
function secretState(): unknown {
  const db = new DatabaseSync(database(), { readOnly: true });
  try {
    return {
      secrets: db.prepare('SELECT id, kek_id, envelope, updated_at FROM secrets ORDER BY id').all(),
      settings: db.prepare('SELECT key, value FROM settings ORDER BY key').all(),
    };
  } finally {
    db.close();
  }
}

const start = (keyStore: KeyStoreConfig): Promise<RunningManager> =>
  startManager({ database: database(), host: '127.0.0.1', port: 0, clusterPort: 0, keyStore, log: silent });

async function adminApi(m: RunningManager): Promise<TestApi> {
  return new TestApi(
    m.url,
    await issueAdminToken(m.services, 'test'),
    path.join(path.dirname(database()), 'pki', 'ca.crt'),
  );
}

before(async () => {
  s = await startSlapd();
  dir = tempDir('tern-secrets');
});

after(async () => {
  await s?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('secrets are sealed with a key from the LDAP container; the database file holds neither them nor the key', async () => {
  const m = await start(ldapStore('manager'));
  try {
    const api = await adminApi(m);
    await api.request('POST', '/api/v1/secrets', { name: 'db-root', value: canary, kind: 'password' });
    await api.request('PUT', '/api/v1/identity/ldap', {
      settings: {
        url: s.url,
        bindDn: s.otherDn,
        userBase: s.userBase,
        userFilter: '(&(objectClass=inetOrgPerson)(uid={user}))',
        groupBase: s.groupBase,
      },
      bindPassword: s.otherPassword,
    });
    await api.request('POST', '/api/v1/secrets', { name: 'app-token', value: bindCanary, kind: 'token' });
    await api.request('POST', '/api/v1/groups', {
      name: 'ops',
      role: 'operator',
      ldapGroup: 'tern-operators',
    });
    const r = await api.request<{ value: string }>('POST', '/api/v1/secrets/db-root/reveal');
    assert.equal(r.value, canary);
    const own = await api.raw('POST', '/api/v1/secrets/ldap-bind-password/reveal');
    assert.equal(own.status, 403, 'the manager’s own credentials are never shown');
  } finally {
    await m.close();
  }
  const keys = await new LdapKeyStore({
    ...(ldapStore('manager') as Extract<KeyStoreConfig, { kind: 'ldap' }>),
  }).list();
  assert.equal(keys.length, 1, 'one key-encryption key, in the directory');
  const raw = Buffer.concat(
    fs
      .readdirSync(path.dirname(database()))
      .filter((f) => f.startsWith('tern.db'))
      .map((f) => fs.readFileSync(path.join(path.dirname(database()), f))),
  );
  for (const needle of [
    canary,
    bindCanary,
    s.otherPassword,
    keys[0].key.toString('base64'),
    keys[0].key.toString('hex'),
  ])
    assert.equal(raw.includes(needle), false, 'the raw database files hold no secret and no key');
  assert.equal(raw.includes(keys[0].key), false);
});

test('a second manager on the same database and LDAP key store decrypts, and logs people in through the directory', async () => {
  const m = await start(ldapStore('manager'));
  try {
    const api = await adminApi(m);
    assert.equal(
      (await api.request<{ value: string }>('POST', '/api/v1/secrets/db-root/reveal')).value,
      canary,
    );
    const res = await api.fetch(`${m.url}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'alice', password: s.users.alice }),
    });
    const who = (await res.json()) as Whoami;
    assert.equal(res.status, 200, JSON.stringify(who));
    assert.deepEqual([who.user, who.roles], ['alice', ['operator']], 'the directory group maps onto a role');
    const dave = await api.fetch(`${m.url}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'alice', password: 'not-her-password' }),
    });
    assert.equal(dave.status, 401);
    // A directory account whose name (in any case) is a local user's never becomes that user.
    await api.request('POST', '/api/v1/users', {
      name: 'carol',
      password: 'carol-local-password',
      role: 'admin',
    });
    const carol = await api.fetch(`${m.url}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'CAROL', password: s.users.carol }),
    });
    assert.equal(carol.status, 401);
  } finally {
    await m.close();
  }
});

test('without access to the key store the manager refuses to start, and writes nothing', async () => {
  const before = secretState();
  await assert.rejects(start(ldapStore('other')), (err: Error) => {
    assert.match(
      err.message,
      new RegExp(`the account ${s.otherDn.replace(/[=,]/g, '.')} may not read the keys`),
    );
    return true;
  });
  await assert.rejects(start({ kind: 'file', path: path.join(dir, 'empty', 'kek.json') }), (err: Error) => {
    assert.match(err.message, /sealed with key kek-\S+ .*which the key store file .* does not hold/);
    return true;
  });
  assert.deepEqual(secretState(), before, 'no secret and no key record was written');
});

test('rotation re-wraps every secret; a backup restored offline brings a lost key store back', async () => {
  let backup: string;
  const m = await start(ldapStore('manager'));
  try {
    const api = await adminApi(m);
    const first = await api.request<{ activeKek: string }>('GET', '/api/v1/keys');
    const r = await api.request<{ kek: string; rewrapped: number; failed: string[] }>(
      'POST',
      '/api/v1/keys/rotate',
    );
    assert.notEqual(r.kek, first.activeKek);
    assert.equal(r.rewrapped, 3);
    assert.deepEqual(r.failed, []);
    const status = await api.request<{ activeKek: string; keys: { id: string; secrets: number }[] }>(
      'GET',
      '/api/v1/keys',
    );
    assert.equal(status.activeKek, r.kek);
    assert.equal(status.keys.find((k) => k.id === r.kek)?.secrets, 3);
    assert.equal(
      (await api.request<{ value: string }>('POST', '/api/v1/secrets/db-root/reveal')).value,
      canary,
    );
    const short = await api.raw('POST', '/api/v1/keys/backup', {
      body: JSON.stringify({ passphrase: 'short' }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(short.status, 400);
    backup = (
      await api.request<{ backup: string }>('POST', '/api/v1/keys/backup', {
        passphrase: 'a long passphrase here',
      })
    ).backup;
  } finally {
    await m.close();
  }
  // The directory is lost; the keys come back from the backup into a key file, offline.
  const file = path.join(dir, 'restored', 'kek.json');
  const saved = path.join(dir, 'keys.backup');
  fs.writeFileSync(saved, backup);
  const out = execFileSync(
    process.execPath,
    [path.join(repoRoot, 'src/manager/main.ts'), 'keys', 'restore', '--from', saved, '--key-file', file],
    { env: { ...process.env, TERN_KEY_PASSPHRASE: 'a long passphrase here' }, encoding: 'utf8' },
  );
  assert.match(out, /2 keys added/);
  const wrong = (() => {
    try {
      execFileSync(
        process.execPath,
        [path.join(repoRoot, 'src/manager/main.ts'), 'keys', 'restore', '--from', saved, '--key-file', file],
        {
          env: { ...process.env, TERN_KEY_PASSPHRASE: 'the wrong passphrase' },
          encoding: 'utf8',
          stdio: 'pipe',
        },
      );
      return '';
    } catch (err) {
      return String((err as { stderr: string }).stderr);
    }
  })();
  assert.match(wrong, /^tern-manager: wrong passphrase/m);
  assert.doesNotMatch(wrong, /at .*\.ts:\d+/, 'no stack trace');
  const m2 = await start({ kind: 'file', path: file });
  try {
    const api = await adminApi(m2);
    assert.equal(
      (await api.request<{ value: string }>('POST', '/api/v1/secrets/app-token/reveal')).value,
      bindCanary,
    );
  } finally {
    await m2.close();
  }
});
