/**
 * The bytes of one chunk file (pure: no I/O). A chunk file comes from a directory that other
 * hosts, a sync from another site or a thief may have touched, so decoding checks every field
 * and bound, and the result is the plaintext only when its digest equals the chunk's name.
 *
 * Layout (big-endian):
 *
 *   0  4  magic 'TCK' 0x01 (the last byte is the format version)
 *   4  1  flags: bit 0 zstd, bit 1 AES-256-GCM; other bits zero
 *   5  3  zero
 *   8  4  length of the plaintext
 *  12 12  IV          } only when encrypted
 *  24 16  GCM tag     }
 *   …     payload: the plaintext, compressed and/or encrypted
 *
 * The GCM additional data is the first 12 bytes and the chunk's name, so neither the flags nor
 * the length can be altered and a chunk copied under another name does not decrypt. Data that
 * zstd cannot shrink (already compressed or encrypted in the guest) is stored as it is, which
 * saves the decompression on every restore. The IV is random: at 96 bits, 2^32 chunks under one
 * key stay far below a collision's odds, and that is 16 EiB of 4 MiB chunks.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { TernError } from '../../errors.ts';
import { chunkDigest, type DatastoreKey } from './chunk-key.ts';

const MAGIC = Buffer.from([0x54, 0x43, 0x4b, 0x01]);
const FLAG_ZSTD = 1;
const FLAG_ENCRYPTED = 2;
const HEADER_BYTES = 12;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** No chunk size Tern chooses exceeds this; a header claiming more is refused before any work. */
export const MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** The largest file a chunk can be: zstd's worst case stays far below a quarter extra. */
export const MAX_CHUNK_FILE_BYTES =
  MAX_CHUNK_BYTES + MAX_CHUNK_BYTES / 4 + HEADER_BYTES + IV_BYTES + TAG_BYTES;

export interface EncodedChunk {
  digest: string;
  file: Buffer;
}

export interface EncodeOptions {
  key?: DatastoreKey | undefined;
  /** zstd level; 1 keeps up with a disk read, higher levels trade speed for space. */
  level?: number;
  /** The chunk's name when the caller has just computed it (`chunkDigest`): hashed once, not twice. */
  digest?: Buffer | undefined;
}

export function encodeChunk(data: Buffer, options: EncodeOptions = {}): EncodedChunk {
  if (data.length === 0 || data.length > MAX_CHUNK_BYTES)
    throw new TernError('invalid_request', `a chunk holds 1 to ${MAX_CHUNK_BYTES} bytes, not ${data.length}`);
  const digest = options.digest ?? chunkDigest(data, options.key);
  const compressed = zlib.zstdCompressSync(data, {
    params: { [zlib.constants.ZSTD_c_compressionLevel]: options.level ?? 1 },
  });
  const useZstd = compressed.length < data.length;
  const body = useZstd ? compressed : data;
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[4] = (useZstd ? FLAG_ZSTD : 0) | (options.key ? FLAG_ENCRYPTED : 0);
  header.writeUInt32BE(data.length, 8);
  if (!options.key) return { digest: digest.toString('hex'), file: Buffer.concat([header, body]) };
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', options.key.dataKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.concat([header, digest]));
  const ct = Buffer.concat([cipher.update(body), cipher.final()]);
  return { digest: digest.toString('hex'), file: Buffer.concat([header, iv, cipher.getAuthTag(), ct]) };
}

function corrupt(digest: string, reason: string): TernError {
  return new TernError('storage_error', `chunk ${digest} is damaged: ${reason}`, {
    chunk: digest,
    damaged: true,
  });
}

/**
 * The plaintext of a chunk file named `digest`, or a TernError('storage_error') with
 * `details.damaged` saying the file is not what its name promises (verify marks such chunks).
 */
export function decodeChunk(file: Buffer, digest: string, key?: DatastoreKey): Buffer {
  if (file.length < HEADER_BYTES) throw corrupt(digest, `${file.length} bytes is shorter than a header`);
  if (!file.subarray(0, 4).equals(MAGIC)) throw corrupt(digest, 'not a chunk file of a known version');
  const flags = file[4]!;
  if ((flags & ~(FLAG_ZSTD | FLAG_ENCRYPTED)) !== 0 || file[5] !== 0 || file[6] !== 0 || file[7] !== 0)
    throw corrupt(digest, `unknown flags ${flags}`);
  const length = file.readUInt32BE(8);
  if (length === 0 || length > MAX_CHUNK_BYTES)
    throw corrupt(digest, `plaintext length ${length} out of range`);
  const encrypted = (flags & FLAG_ENCRYPTED) !== 0;
  if (encrypted && !key) throw corrupt(digest, 'encrypted, and the datastore was opened without a key');
  if (!encrypted && key) throw corrupt(digest, 'not encrypted in an encrypted datastore');
  const name = Buffer.from(digest, 'hex');
  let body = file.subarray(HEADER_BYTES);
  if (key) {
    if (body.length < IV_BYTES + TAG_BYTES) throw corrupt(digest, 'too short for its IV and tag');
    const decipher = createDecipheriv('aes-256-gcm', key.dataKey, body.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAAD(Buffer.concat([file.subarray(0, HEADER_BYTES), name]));
    decipher.setAuthTag(body.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    try {
      body = Buffer.concat([decipher.update(body.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
    } catch {
      throw corrupt(digest, 'does not authenticate under the datastore key');
    }
  }
  let data: Buffer;
  if ((flags & FLAG_ZSTD) !== 0) {
    try {
      // Bounded by the header's length: a crafted frame cannot make us allocate more.
      data = zlib.zstdDecompressSync(body, { maxOutputLength: length });
    } catch (err) {
      throw corrupt(digest, `zstd: ${(err as Error).message}`);
    }
  } else data = body;
  if (data.length !== length) throw corrupt(digest, `holds ${data.length} bytes, its header says ${length}`);
  if (!chunkDigest(data, key).equals(name)) throw corrupt(digest, 'its content does not hash to its name');
  return data;
}
