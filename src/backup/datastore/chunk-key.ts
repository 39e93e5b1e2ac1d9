/**
 * Chunk names and the keys of an encrypted datastore.
 *
 * Without encryption a chunk is named by the SHA-256 of its plaintext, so equal data is stored
 * once whichever VM or backup it came from. With encryption that name would leak: anyone holding
 * the datastore could hash a known block (a distribution's kernel, a leaked document) and see
 * whether the store holds it, and could compare two datastores for shared content. So an
 * encrypted datastore names chunks by HMAC-SHA-256 of the plaintext under a key derived from the
 * datastore's key (Proxmox Backup Server keys its digest the same way): dedup still works
 * between backups under the same key, and names say nothing to whoever lacks it.
 *
 * One 32-byte key comes from the caller (later, Tern's key stores); separate keys for naming,
 * encryption and manifest authentication are derived from it with HKDF, so no use of the key
 * can stand in for another, and the fingerprint stored in the datastore identifies the key
 * without revealing anything about it.
 */
import { createHash, createHmac, hkdfSync } from 'node:crypto';
import { TernError } from '../../errors.ts';

export const KEY_BYTES = 32;
export const DIGEST_BYTES = 32;
const DIGEST_HEX = /^[0-9a-f]{64}$/;

export interface DatastoreKey {
  /** 16 bytes hex: which key a datastore or a manifest was written with. */
  readonly fingerprint: string;
  /** Names chunks (HMAC-SHA-256). */
  readonly nameKey: Buffer;
  /** Encrypts chunks (AES-256-GCM). */
  readonly dataKey: Buffer;
  /** Authenticates manifests (HMAC-SHA-256). */
  readonly manifestKey: Buffer;
}

const derive = (key: Buffer, use: string, bytes: number) =>
  Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), `tern-backup:v1:${use}`, bytes));

export function deriveDatastoreKey(key: Buffer): DatastoreKey {
  if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES)
    throw new TernError('invalid_request', `a datastore key is ${KEY_BYTES} bytes (AES-256)`);
  return Object.freeze({
    fingerprint: derive(key, 'fingerprint', 16).toString('hex'),
    nameKey: derive(key, 'chunk-name', 32),
    dataKey: derive(key, 'chunk-data', 32),
    manifestKey: derive(key, 'manifest', 32),
  });
}

/** The name of a chunk holding `data`: SHA-256, or HMAC-SHA-256 under the key's name key. */
export function chunkDigest(data: Uint8Array, key?: DatastoreKey): Buffer {
  const h = key ? createHmac('sha256', key.nameKey) : createHash('sha256');
  return h.update(data).digest();
}

export function isDigestHex(value: unknown): value is string {
  return typeof value === 'string' && DIGEST_HEX.test(value);
}
