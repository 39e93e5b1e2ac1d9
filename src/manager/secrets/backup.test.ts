import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { exportKeys, importKeys } from './backup.ts';
import type { Kek } from './keystore.ts';

const keys: Kek[] = [
  { id: 'kek-20250101-aaaaaa', key: randomBytes(32), createdAt: '2025-01-01T00:00:00.000Z' },
  { id: 'kek-20250601-bbbbbb', key: randomBytes(32), createdAt: '2025-06-01T00:00:00.000Z' },
];
const passphrase = 'a long enough passphrase';

test('keys come back from a backup with the right passphrase, and are not in it in the clear', async () => {
  const blob = await exportKeys(keys, passphrase);
  for (const k of keys) assert.ok(!blob.includes(k.key.toString('base64')));
  assert.deepEqual(await importKeys(blob, passphrase), keys);
});

test('a wrong passphrase and a damaged file get different, clear errors', async () => {
  const blob = await exportKeys(keys, passphrase);
  await assert.rejects(importKeys(blob, 'another passphrase'), /wrong passphrase/);
  const o = JSON.parse(blob);
  const ct = Buffer.from(o.ct, 'base64');
  ct[3] ^= 0xff;
  await assert.rejects(
    importKeys(JSON.stringify({ ...o, ct: ct.toString('base64') }), passphrase),
    /not a usable Tern key backup .*damaged/,
  );
  // The cost is authenticated: lowering it changes nothing but makes the backup unusable.
  await assert.rejects(
    importKeys(JSON.stringify({ ...o, createdAt: '2000-01-01T00:00:00.000Z' }), passphrase),
    /damaged/,
  );
  await assert.rejects(importKeys('{"hello": 1}', passphrase), /not a key backup/);
  await assert.rejects(importKeys('garbage', passphrase), /not JSON/);
  await assert.rejects(importKeys(JSON.stringify({ ...o, v: 9 }), passphrase), /unknown version 9/);
  await assert.rejects(
    importKeys(JSON.stringify({ ...o, kdf: { ...o.kdf, N: 2 ** 30 } }), passphrase),
    /excessive key derivation/,
  );
});

test('short passphrases and empty key lists are refused', async () => {
  await assert.rejects(exportKeys(keys, 'short'), /at least 12 characters/);
  await assert.rejects(importKeys('{}', 'short'), /at least 12 characters/);
  await assert.rejects(exportKeys([], passphrase), /no keys/);
});
