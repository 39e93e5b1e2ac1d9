/**
 * The index of one disk in one backup: the disk cut into chunks of one fixed size, and the name
 * of the chunk holding each piece, in order (pure: encode and decode). The last chunk is shorter
 * when the disk size is not a multiple of the chunk size. An incremental backup starts from the
 * previous index and replaces only the names of the chunks that changed.
 *
 * File layout (big-endian):
 *
 *   0  8  magic 'TERNFIDX'
 *   8  4  version (1)
 *  12  4  chunk size
 *  16  8  disk size
 *  24  8  chunk count (= ceil(disk size / chunk size))
 *  32  …  chunk count × 32-byte digests
 *   …  32  SHA-256 of everything before it
 *
 * The trailing checksum makes an index verifiable on its own; the manifest records it too, so an
 * index cannot be swapped for another one that is whole.
 */
import { createHash } from 'node:crypto';
import { TernError } from '../../errors.ts';
import { DIGEST_BYTES, isDigestHex } from './chunk-key.ts';

const MAGIC = Buffer.from('TERNFIDX', 'latin1');
const VERSION = 1;
const HEADER_BYTES = 32;
export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;
/**
 * A new datastore's chunk size, chosen by bench/backup (bench/RESULTS.md): 64 KiB, the dirty
 * bitmap's granularity, is the only size at which 1% of a disk rewritten by random 4 KiB writes
 * reads and stores at most ¼ of what 4 MiB chunks do (0.15x), and ten daily backups
 * deduplicate 8.3:1 against 2.1:1; a full backup runs at half the rate of 4 MiB chunks, and a
 * TiB is 16 million chunk files.
 */
export const DEFAULT_CHUNK_SIZE = 64 * 1024;
/** 64 TiB: beyond any disk Tern creates; a bound on what a damaged header can make us allocate. */
export const MAX_DISK_SIZE = 2 ** 46;

export function isChunkSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_CHUNK_SIZE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0;
}

export class FixedIndex {
  readonly chunkSize: number;
  readonly diskSize: number;
  readonly count: number;
  readonly #digests: Buffer;

  /** An index with no chunk named yet; `from` copies the names of a previous backup's index. */
  constructor(diskSize: number, chunkSize: number, from?: FixedIndex) {
    if (!isChunkSize(chunkSize))
      throw new TernError(
        'invalid_request',
        `chunk size ${chunkSize} is not a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE}`,
      );
    if (!Number.isSafeInteger(diskSize) || diskSize <= 0 || diskSize > MAX_DISK_SIZE)
      throw new TernError('invalid_request', `disk size ${diskSize} is out of range`);
    this.chunkSize = chunkSize;
    this.diskSize = diskSize;
    this.count = Math.ceil(diskSize / chunkSize);
    this.#digests = Buffer.alloc(this.count * DIGEST_BYTES);
    if (from) {
      if (from.chunkSize !== chunkSize)
        throw new TernError('invalid_request', `chunk size ${chunkSize} differs from ${from.chunkSize}`);
      // A resized disk keeps the names of the chunks that cover the same bytes; only a last,
      // short chunk of either size differs, and stays unnamed until it is read again.
      let keep = Math.min(from.count, this.count);
      if (keep > 0 && from.range(keep - 1).length !== this.range(keep - 1).length) keep--;
      from.#digests.copy(this.#digests, 0, 0, keep * DIGEST_BYTES);
    }
  }

  /** Where chunk `i` lies on the disk. */
  range(i: number): { offset: number; length: number } {
    this.#check(i);
    const offset = i * this.chunkSize;
    return { offset, length: Math.min(this.chunkSize, this.diskSize - offset) };
  }

  digest(i: number): string {
    this.#check(i);
    return this.#digests.toString('hex', i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES);
  }

  setDigest(i: number, digest: string): void {
    this.#check(i);
    if (!isDigestHex(digest)) throw new TernError('invalid_request', `not a chunk digest: ${digest}`);
    this.#digests.write(digest, i * DIGEST_BYTES, 'hex');
  }

  /** Every distinct chunk the index names (what garbage collection must keep). */
  distinctDigests(): Set<string> {
    const seen = new Set<string>();
    for (let i = 0; i < this.count; i++) seen.add(this.digest(i));
    return seen;
  }

  encode(): Buffer {
    const out = Buffer.alloc(HEADER_BYTES + this.#digests.length + DIGEST_BYTES);
    MAGIC.copy(out, 0);
    out.writeUInt32BE(VERSION, 8);
    out.writeUInt32BE(this.chunkSize, 12);
    out.writeBigUInt64BE(BigInt(this.diskSize), 16);
    out.writeBigUInt64BE(BigInt(this.count), 24);
    this.#digests.copy(out, HEADER_BYTES);
    const body = out.subarray(0, out.length - DIGEST_BYTES);
    createHash('sha256').update(body).digest().copy(out, body.length);
    return out;
  }

  static decode(file: Buffer): FixedIndex {
    const bad = (why: string) =>
      new TernError('storage_error', `index is damaged: ${why}`, { damaged: true });
    if (file.length < HEADER_BYTES + DIGEST_BYTES) throw bad(`${file.length} bytes is too short`);
    if (!file.subarray(0, 8).equals(MAGIC)) throw bad('not a Tern fixed index');
    if (file.readUInt32BE(8) !== VERSION) throw bad(`unknown version ${file.readUInt32BE(8)}`);
    const body = file.subarray(0, file.length - DIGEST_BYTES);
    if (!createHash('sha256').update(body).digest().equals(file.subarray(body.length)))
      throw bad('its checksum does not match');
    const chunkSize = file.readUInt32BE(12);
    const diskSize = Number(file.readBigUInt64BE(16));
    const count = Number(file.readBigUInt64BE(24));
    if (!isChunkSize(chunkSize)) throw bad(`chunk size ${chunkSize}`);
    if (!Number.isSafeInteger(diskSize) || diskSize <= 0 || diskSize > MAX_DISK_SIZE)
      throw bad(`disk size ${diskSize}`);
    if (count !== Math.ceil(diskSize / chunkSize)) throw bad(`${count} chunks for ${diskSize} bytes`);
    if (body.length !== HEADER_BYTES + count * DIGEST_BYTES) throw bad(`length ${file.length}`);
    const index = new FixedIndex(diskSize, chunkSize);
    file.copy(index.#digests, 0, HEADER_BYTES, body.length);
    return index;
  }

  /** True once every chunk has a name: only a complete index may be written. */
  get complete(): boolean {
    // An all-zero 32-byte name is no SHA-256 anyone will meet; it marks a chunk not yet named.
    const zero = Buffer.alloc(DIGEST_BYTES);
    for (let i = 0; i < this.count; i++)
      if (this.#digests.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES).equals(zero)) return false;
    return true;
  }

  #check(i: number): void {
    if (!Number.isInteger(i) || i < 0 || i >= this.count)
      throw new TernError('invalid_request', `chunk ${i} is outside an index of ${this.count}`);
  }
}
