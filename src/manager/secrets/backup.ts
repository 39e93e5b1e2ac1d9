/**
 * Key backup: the key-encryption keys as one text blob, sealed under a passphrase, so that a
 * lost key store can be rebuilt (`tern-manager keys restore`). The passphrase key comes from
 * scrypt (memory-hard, to slow down guessing), and the blob carries a passphrase check value so
 * that a wrong passphrase and a damaged file get different errors.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  randomBytes,
  scrypt,
  timingSafeEqual,
} from 'node:crypto';
import { TernError } from '../../errors.ts';
import { kekFromStored } from './envelope.ts';
import { readKeyStore } from './keyring.ts';
import type { Kek, KeyStore } from './keystore.ts';

export const MIN_PASSPHRASE_LENGTH = 12;
const FORMAT = 'tern-key-backup';
/** 64 MiB and about a third of a second per try on a small server. */
const COST = { N: 2 ** 16, r: 8, p: 1 };
/** What a backup may ask of us: a crafted file must not make us allocate gigabytes. */
const MAX_COST = { N: 2 ** 20, r: 16, p: 4 };
const MAX_BLOB = 1024 * 1024;

interface Blob {
  format: typeof FORMAT;
  v: 1;
  createdAt: string;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  check: string;
  iv: string;
  ct: string;
  tag: string;
}

function checkPassphrase(passphrase: string): void {
  if (typeof passphrase !== 'string' || [...passphrase].length < MIN_PASSPHRASE_LENGTH)
    throw new TernError(
      'invalid_request',
      `the backup passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters long`,
    );
}

function derive(passphrase: string, kdf: Blob['kdf']): Promise<{ enc: Buffer; check: string }> {
  return new Promise((resolve, reject) =>
    scrypt(
      passphrase.normalize('NFC'),
      Buffer.from(kdf.salt, 'base64'),
      64,
      { N: kdf.N, r: kdf.r, p: kdf.p, maxmem: 256 * kdf.N * kdf.r },
      (err, out) => {
        if (err) return reject(new TernError('internal', `cannot derive the backup key: ${err.message}`));
        const check = createHmac('sha256', out.subarray(32))
          .update('tern key backup passphrase check')
          .digest('hex');
        resolve({ enc: out.subarray(0, 32), check: check.slice(0, 32) });
      },
    ),
  );
}

/** The header is authenticated with the keys, so nobody can lower the cost or swap the salt. */
const headerAad = (b: Pick<Blob, 'format' | 'v' | 'createdAt' | 'kdf' | 'check'>) =>
  Buffer.from(JSON.stringify([b.format, b.v, b.createdAt, b.kdf.N, b.kdf.r, b.kdf.p, b.kdf.salt, b.check]));

export async function exportKeys(keks: Kek[], passphrase: string): Promise<string> {
  checkPassphrase(passphrase);
  if (keks.length === 0) throw new TernError('invalid_request', 'there are no keys to back up');
  const kdf = { name: 'scrypt' as const, ...COST, salt: randomBytes(16).toString('base64') };
  const { enc, check } = await derive(passphrase, kdf);
  const header = {
    format: FORMAT as typeof FORMAT,
    v: 1 as const,
    createdAt: new Date().toISOString(),
    kdf,
    check,
  };
  const plain = Buffer.from(
    JSON.stringify(keks.map((k) => ({ id: k.id, key: k.key.toString('base64'), createdAt: k.createdAt }))),
  );
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', enc, iv);
  cipher.setAAD(headerAad(header));
  const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
  plain.fill(0);
  const blob: Blob = {
    ...header,
    iv: iv.toString('base64'),
    ct: ct.toString('base64'),
    tag: cipher.getAuthTag().toString('base64'),
  };
  return `${JSON.stringify(blob, null, 2)}\n`;
}

const damaged = (why: string) =>
  new TernError('invalid_request', `this is not a usable Tern key backup (${why}): was the file damaged?`);

function parseBlob(text: string): Blob {
  let o: unknown;
  try {
    o = typeof text === 'string' && text.length <= MAX_BLOB ? JSON.parse(text) : undefined;
  } catch {
    throw damaged('not JSON');
  }
  const b = o as Partial<Blob> | undefined;
  if (!b || typeof b !== 'object' || b.format !== FORMAT) throw damaged('not a key backup');
  if (b.v !== 1) throw damaged(`unknown version ${String(b.v)}: made by a newer Tern?`);
  const k = b.kdf;
  const int = (x: unknown, max: number) =>
    Number.isSafeInteger(x) && (x as number) >= 1 && (x as number) <= max;
  if (
    k?.name !== 'scrypt' ||
    !int(k.N, MAX_COST.N) ||
    (k.N & (k.N - 1)) !== 0 ||
    !int(k.r, MAX_COST.r) ||
    !int(k.p, MAX_COST.p) ||
    typeof k.salt !== 'string'
  )
    throw damaged('unknown or excessive key derivation');
  for (const f of ['createdAt', 'check', 'iv', 'ct', 'tag'] as const)
    if (typeof b[f] !== 'string') throw damaged(`missing ${f}`);
  return b as Blob;
}

function parseKeys(plain: Buffer): Kek[] {
  let list: unknown;
  try {
    list = JSON.parse(plain.toString('utf8'));
  } catch {
    throw damaged('its keys are not readable');
  }
  if (!Array.isArray(list) || list.length === 0) throw damaged('it holds no keys');
  return list.map((e: unknown) => {
    const kek = kekFromStored(e);
    if (!kek) throw damaged('it holds a malformed key');
    return kek;
  });
}

export async function importKeys(blob: string, passphrase: string): Promise<Kek[]> {
  checkPassphrase(passphrase);
  const b = parseBlob(blob);
  const { enc, check } = await derive(passphrase, b.kdf);
  const stored = Buffer.from(b.check, 'utf8');
  if (stored.length !== check.length || !timingSafeEqual(stored, Buffer.from(check)))
    throw new TernError('invalid_request', 'wrong passphrase for this key backup');
  let plain: Buffer;
  try {
    const decipher = createDecipheriv('aes-256-gcm', enc, Buffer.from(b.iv, 'base64'), {
      authTagLength: 16,
    });
    decipher.setAAD(headerAad(b));
    decipher.setAuthTag(Buffer.from(b.tag, 'base64'));
    plain = Buffer.concat([decipher.update(Buffer.from(b.ct, 'base64')), decipher.final()]);
  } catch {
    throw damaged('the passphrase is right but the keys do not decrypt');
  }
  try {
    return parseKeys(plain);
  } finally {
    plain.fill(0);
  }
}

/** Adds to `keyStore` the keys of a backup it lacks; a different key under a known id is refused. */
export async function restoreKeys(
  keyStore: KeyStore,
  blob: string,
  passphrase: string,
): Promise<{ added: string[]; present: string[] }> {
  const keys = await importKeys(blob, passphrase);
  const held = new Map((await readKeyStore(keyStore)).map((k) => [k.id, k]));
  const clash = keys.find((k) => held.has(k.id) && !held.get(k.id)!.key.equals(k.key));
  if (clash)
    throw new TernError(
      'conflict',
      `key store ${keyStore.description} already holds a different key named ${clash.id}; nothing was restored`,
    );
  const added: string[] = [];
  for (const k of keys.filter((k) => !held.has(k.id))) {
    await keyStore.add(k);
    added.push(k.id);
  }
  return { added, present: keys.filter((k) => held.has(k.id)).map((k) => k.id) };
}
