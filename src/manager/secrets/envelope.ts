/**
 * Envelope encryption of one secret: the value is sealed with its own random data key, and only
 * that data key is wrapped with the key-encryption key (KEK) from the key store. Rotating the KEK
 * then re-wraps 60 bytes per secret and never touches (or decrypts) the value itself.
 *
 * The value's ciphertext is bound (as GCM additional data) to the secret's id, so a ciphertext
 * copied onto another row does not decrypt there. The wrapped data key is bound to the KEK's id.
 * Envelopes come from the database file, so every field is checked before use.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Kek } from './keystore.ts';

export interface Envelope {
  v: 1;
  /** Id of the KEK that wraps `dek`. */
  kek: string;
  /** The data key, AES-256-GCM under the KEK (base64). */
  dek: string;
  dekIv: string;
  dekTag: string;
  /** The value, AES-256-GCM under the data key (base64). */
  iv: string;
  ct: string;
  tag: string;
}

const ALGORITHM = 'aes-256-gcm';
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** Secrets are passwords, tokens and keys; anything bigger does not belong here. */
export const MAX_SECRET_BYTES = 64 * 1024;
const MAX_CT_BASE64 = Math.ceil(MAX_SECRET_BYTES / 3) * 4;
const FIELDS = ['v', 'kek', 'dek', 'dekIv', 'dekTag', 'iv', 'ct', 'tag'] as const;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
export const KEK_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A key from its stored form `{id, key: base64, createdAt}`; null when it is not a valid key. */
export function kekFromStored(e: unknown): Kek | null {
  const o = e as { id?: unknown; key?: unknown; createdAt?: unknown } | null;
  const key = typeof o?.key === 'string' ? Buffer.from(o.key, 'base64') : Buffer.alloc(0);
  if (
    typeof o?.id !== 'string' ||
    !KEK_ID.test(o.id) ||
    key.length !== KEY_BYTES ||
    typeof o.createdAt !== 'string'
  )
    return null;
  return { id: o.id, key, createdAt: o.createdAt };
}

// Domain-separate the two uses of GCM additional data so neither can stand in for the other.
const valueAad = (aad: string) => Buffer.from(`tern-secret-value:v1:${aad}`, 'utf8');
const dekAad = (kekId: string) => Buffer.from(`tern-secret-dek:v1:${kekId}`, 'utf8');

function checkKek(kek: Kek): void {
  if (!KEK_ID.test(kek.id) || !Buffer.isBuffer(kek.key) || kek.key.length !== KEY_BYTES)
    throw new TernError('internal', `key ${String(kek.id)} is not a 32-byte AES-256 key`);
}

function encrypt(key: Buffer, plaintext: Buffer, aad: Buffer): { iv: Buffer; ct: Buffer; tag: Buffer } {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return { iv, ct, tag: cipher.getAuthTag() };
}

/** Throws the bare crypto error on a wrong key or altered bytes; callers word it. */
function decrypt(key: Buffer, iv: Buffer, ct: Buffer, tag: Buffer, aad: Buffer): Buffer {
  const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(ct), decipher.final()]);
}

const b64 = (b: Buffer) => b.toString('base64');
const unb64 = (s: string) => Buffer.from(s, 'base64');

function wrap(dek: Buffer, kek: Kek): Pick<Envelope, 'kek' | 'dek' | 'dekIv' | 'dekTag'> {
  const w = encrypt(kek.key, dek, dekAad(kek.id));
  return { kek: kek.id, dek: b64(w.ct), dekIv: b64(w.iv), dekTag: b64(w.tag) };
}

function altered(label: string): TernError {
  return new TernError(
    'internal',
    `secret ${label} cannot be decrypted: it was altered or sealed with another key`,
  );
}

function unwrap(untrusted: Envelope, kek: Kek, label: string): Buffer {
  checkKek(kek);
  const env = validateEnvelope(untrusted, label);
  if (env.kek !== kek.id)
    throw new TernError('internal', `secret ${label} is sealed with key ${env.kek}, not ${kek.id}`);
  try {
    return decrypt(kek.key, unb64(env.dekIv), unb64(env.dek), unb64(env.dekTag), dekAad(kek.id));
  } catch {
    throw altered(label);
  }
}

export function seal(plaintext: Buffer, kek: Kek, aad: string): Envelope {
  checkKek(kek);
  if (plaintext.length > MAX_SECRET_BYTES)
    throw new TernError('payload_too_large', `a secret may be at most ${MAX_SECRET_BYTES} bytes`);
  const dek = randomBytes(KEY_BYTES);
  try {
    const value = encrypt(dek, plaintext, valueAad(aad));
    return { v: 1, ...wrap(dek, kek), iv: b64(value.iv), ct: b64(value.ct), tag: b64(value.tag) };
  } finally {
    dek.fill(0);
  }
}

/** `label` names the secret in errors (its name); `aad` is what it was sealed against (its id). */
export function open(env: Envelope, kek: Kek, aad: string, label = aad): Buffer {
  const dek = unwrap(env, kek, label);
  const { iv, ct, tag } = validateEnvelope(env, label);
  try {
    return decrypt(dek, unb64(iv), unb64(ct), unb64(tag), valueAad(aad));
  } catch {
    throw altered(label);
  } finally {
    dek.fill(0);
  }
}

/** The same envelope with its data key wrapped by `newKek`; the value's ciphertext is kept. */
export function rewrap(env: Envelope, oldKek: Kek, newKek: Kek, label = 'being re-wrapped'): Envelope {
  checkKek(newKek);
  const dek = unwrap(env, oldKek, label);
  try {
    return { ...validateEnvelope(env, label), ...wrap(dek, newKek) };
  } finally {
    dek.fill(0);
  }
}

function field(o: Record<string, unknown>, name: string, bytes: number | null, label: string): string {
  const s = o[name];
  const max = bytes === null ? MAX_CT_BASE64 : Math.ceil(bytes / 3) * 4;
  if (typeof s !== 'string' || s.length > max || !BASE64.test(s))
    throw new TernError('internal', `secret ${label} is damaged: its field ${name} is not valid base64`);
  if (bytes !== null && unb64(s).length !== bytes)
    throw new TernError('internal', `secret ${label} is damaged: its field ${name} is not ${bytes} bytes`);
  return s;
}

/** Parses an envelope as stored in the database. */
export function parseEnvelope(text: string, label: string): Envelope {
  let o: unknown;
  try {
    o = text.length <= MAX_CT_BASE64 + 1024 ? JSON.parse(text) : undefined;
  } catch {
    o = undefined;
  }
  return validateEnvelope(o, label);
}

/** The envelope if `o` is exactly of its shape; anything else is refused as damaged. */
export function validateEnvelope(o: unknown, label: string): Envelope {
  if (!o || typeof o !== 'object' || Array.isArray(o))
    throw new TernError('internal', `secret ${label} is damaged: its envelope is not a JSON object`);
  const r = o as Record<string, unknown>;
  const extra = Object.keys(r).filter((k) => !(FIELDS as readonly string[]).includes(k));
  if (extra.length)
    throw new TernError('internal', `secret ${label} is damaged: unexpected fields ${extra.join(', ')}`);
  if (r.v !== 1)
    throw new TernError('internal', `secret ${label} has an unknown envelope version ${String(r.v)}`);
  if (typeof r.kek !== 'string' || !KEK_ID.test(r.kek))
    throw new TernError('internal', `secret ${label} is damaged: its key id is not valid`);
  return {
    v: 1,
    kek: r.kek,
    dek: field(r, 'dek', KEY_BYTES, label),
    dekIv: field(r, 'dekIv', IV_BYTES, label),
    dekTag: field(r, 'dekTag', TAG_BYTES, label),
    iv: field(r, 'iv', IV_BYTES, label),
    ct: field(r, 'ct', null, label),
    tag: field(r, 'tag', TAG_BYTES, label),
  };
}
