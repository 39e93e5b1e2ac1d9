/**
 * The replication stream (docs/replication.md): what the primary's host sends the replica's host
 * for one recovery point, over one HTTPS POST body. Pure but for zstd and SHA-256: no I/O.
 *
 * Layout (big-endian):
 *
 *   header   8  magic `TERNRP01`
 *            4  length of the JSON that follows (at most 64 KiB)
 *            …  JSON {replication, point, base, takenAt, disks: [{name, sizeBytes}]}
 *   frames  1  kind: 1 data raw, 2 data zstd, 3 zeroes, 4 end of a disk, 255 trailer
 *           1  disk index (into the header's disks; 0 for the trailer)
 *           2  zero
 *           8  offset in the disk (0 for kinds 4 and 255)
 *           4  length of the data (uncompressed; 0 for kind 4; the payload's length for 255)
 *           4  length of the payload that follows
 *          32  SHA-256 of the uncompressed data (zeros for kinds 3 and 4; see below for 255)
 *           …  payload
 *
 * Each frame header, its digest included, feeds a running SHA-256 that starts with the header's
 * bytes, so a frame dropped, repeated or moved changes it; the trailer's digest field is that
 * running SHA-256 over everything before the trailer, and its payload is JSON {consistency,
 * consistencyNote, frames, dataBytes} (frames before it, data bytes uncompressed). The frames of
 * a disk come in increasing offset order and never overlap; every disk ends with kind 4.
 *
 * The receiver trusts nothing: each length is checked against 16 MiB before anything is
 * allocated, each frame against its disk's bounds, each data frame against its digest, and the
 * stream against its trailer. Any fault is a TernError('invalid_request') naming it.
 */
import { createHash, type Hash } from 'node:crypto';
import zlib from 'node:zlib';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { Timestamp } from '../../wire/common.ts';
import { Consistency, PointId, ReplicaDisk, ReplicationId } from '../../wire/replication.ts';

export const MAGIC = Buffer.from('TERNRP01', 'latin1');
/** The most bytes a frame carries (data, zeroes or payload): a larger length is refused unread. */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;
const MAX_JSON_BYTES = 64 * 1024;
const FRAME_HEADER_BYTES = 52;
const NO_DIGEST = Buffer.alloc(32);

export const FrameKind = { raw: 1, zstd: 2, zeroes: 3, end: 4, trailer: 255 } as const;

export const StreamHeader = Type.Object(
  {
    replication: ReplicationId,
    point: PointId,
    base: Type.Union([PointId, Type.Null()]),
    takenAt: Timestamp,
    disks: Type.Array(ReplicaDisk, { minItems: 1, maxItems: 16 }),
  },
  { additionalProperties: false },
);
export type StreamHeader = Static<typeof StreamHeader>;

export const StreamTrailer = Type.Object(
  {
    consistency: Consistency,
    consistencyNote: Type.Union([Type.String({ maxLength: 500 }), Type.Null()]),
    frames: Type.Integer({ minimum: 0 }),
    dataBytes: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type StreamTrailer = Static<typeof StreamTrailer>;

export type Frame =
  | { type: 'header'; header: StreamHeader }
  | { type: 'data'; disk: number; offset: number; data: Buffer }
  | { type: 'zeroes'; disk: number; offset: number; length: number }
  | { type: 'end'; disk: number }
  /** `sha256`: the stream's chained digest; `streamBytes`: every byte of the stream. */
  | { type: 'trailer'; trailer: StreamTrailer; sha256: string; streamBytes: number };

function refuse(reason: string, details?: Record<string, unknown>): TernError {
  return new TernError('invalid_request', `the replication stream is refused: ${reason}`, details);
}

/** Where each disk's frames may continue: offsets only grow, nothing after a disk's end. */
class DiskCursors {
  readonly #disks: readonly ReplicaDisk[];
  readonly #next: number[];
  readonly #ended: boolean[];

  constructor(disks: readonly ReplicaDisk[]) {
    this.#disks = disks;
    this.#next = disks.map(() => 0);
    this.#ended = disks.map(() => false);
  }

  /** Refuses a range of a disk that is out of its bounds, out of order, or after its end. */
  advance(disk: number, offset: number, length: number): void {
    const d = this.#disks[disk];
    if (!d) throw refuse(`disk index ${disk}, the stream has ${this.#disks.length} disks`);
    if (this.#ended[disk]) throw refuse(`a frame of ${d.name} after its end`);
    if (length < 1 || length > MAX_FRAME_BYTES)
      throw refuse(`a frame of ${d.name} of ${length} bytes (1 to ${MAX_FRAME_BYTES})`);
    if (offset + length > d.sizeBytes)
      throw refuse(`a frame at ${offset}+${length} beyond the end of ${d.name} (${d.sizeBytes} bytes)`);
    if (offset < this.#next[disk]!)
      throw refuse(
        `a frame of ${d.name} at ${offset}, before the end of the previous one (${this.#next[disk]})`,
      );
    this.#next[disk] = offset + length;
  }

  end(disk: number): void {
    const d = this.#disks[disk];
    if (!d) throw refuse(`disk index ${disk}, the stream has ${this.#disks.length} disks`);
    if (this.#ended[disk]) throw refuse(`${d.name} ends twice`);
    this.#ended[disk] = true;
  }

  /** Names of the disks that have not ended. */
  open(): string[] {
    return this.#disks.filter((_, i) => !this.#ended[i]).map((d) => d.name);
  }
}

function frameHeader(
  kind: number,
  disk: number,
  offset: number,
  length: number,
  payloadLength: number,
  digest: Buffer,
): Buffer {
  const b = Buffer.alloc(FRAME_HEADER_BYTES);
  b[0] = kind;
  b[1] = disk;
  b.writeBigUInt64BE(BigInt(offset), 4);
  b.writeUInt32BE(length, 12);
  b.writeUInt32BE(payloadLength, 16);
  digest.copy(b, 20);
  return b;
}

function headerBytes(header: StreamHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header));
  const b = Buffer.alloc(12);
  MAGIC.copy(b, 0);
  b.writeUInt32BE(json.length, 8);
  return Buffer.concat([b, json]);
}

/**
 * Builds one stream: write `start()`, then the frames each method returns in order, then
 * `trailer()`. Data and zeroes longer than 16 MiB are split into several frames.
 */
export class FrameEncoder {
  readonly #header: StreamHeader;
  readonly #hash: Hash = createHash('sha256');
  readonly #cursors: DiskCursors;
  readonly #level: number;
  #frames = 0;
  #dataBytes = 0;
  #streamBytes = 0;
  #sha256: string | null = null;
  #started = false;

  constructor(header: StreamHeader, options: { level?: number } = {}) {
    if (!Value.Check(StreamHeader, header))
      throw new TernError('internal', 'a replication stream header out of shape');
    this.#header = header;
    this.#cursors = new DiskCursors(header.disks);
    this.#level = options.level ?? 1;
  }

  /** The stream's first bytes. */
  start(): Buffer {
    if (this.#started) throw new TernError('internal', 'a replication stream started twice');
    this.#started = true;
    const bytes = headerBytes(this.#header);
    this.#hash.update(bytes);
    return this.#emit(bytes);
  }

  /** Frames carrying `data` at `offset` of disk `disk`, zstd where it shrinks them. */
  data(disk: number, offset: number, data: Buffer): Buffer {
    const out: Buffer[] = [];
    for (let at = 0; at < data.length; at += MAX_FRAME_BYTES) {
      const piece = data.subarray(at, Math.min(data.length, at + MAX_FRAME_BYTES));
      this.#cursors.advance(disk, offset + at, piece.length);
      const digest = createHash('sha256').update(piece).digest();
      const compressed = zlib.zstdCompressSync(piece, {
        params: { [zlib.constants.ZSTD_c_compressionLevel]: this.#level },
      });
      const zstd = compressed.length < piece.length;
      const payload = zstd ? compressed : piece;
      out.push(
        this.#frame(
          zstd ? FrameKind.zstd : FrameKind.raw,
          disk,
          offset + at,
          piece.length,
          payload.length,
          digest,
        ),
        payload,
      );
      this.#dataBytes += piece.length;
    }
    return this.#emit(Buffer.concat(out));
  }

  /** Frames saying the range reads as zeroes. */
  zeroes(disk: number, offset: number, length: number): Buffer {
    const out: Buffer[] = [];
    for (let at = 0; at < length; at += MAX_FRAME_BYTES) {
      const n = Math.min(length - at, MAX_FRAME_BYTES);
      this.#cursors.advance(disk, offset + at, n);
      out.push(this.#frame(FrameKind.zeroes, disk, offset + at, n, 0, NO_DIGEST));
    }
    return this.#emit(Buffer.concat(out));
  }

  /** The frame that ends disk `disk`: nothing more of it follows. */
  endDisk(disk: number): Buffer {
    this.#cursors.end(disk);
    return this.#emit(this.#frame(FrameKind.end, disk, 0, 0, 0, NO_DIGEST));
  }

  /** The last bytes of the stream; every disk must have ended. */
  trailer(t: { consistency: StreamTrailer['consistency']; consistencyNote: string | null }): Buffer {
    const open = this.#cursors.open();
    if (open.length > 0)
      throw new TernError('internal', `a replication stream ends before ${open.join(', ')} ended`);
    if (!this.#started || this.#sha256 !== null)
      throw new TernError('internal', 'a replication trailer outside the stream');
    const trailer: StreamTrailer = { ...t, frames: this.#frames, dataBytes: this.#dataBytes };
    const json = Buffer.from(JSON.stringify(trailer));
    const digest = this.#hash.digest();
    this.#sha256 = digest.toString('hex');
    const header = frameHeader(FrameKind.trailer, 0, 0, json.length, json.length, digest);
    return this.#emit(Buffer.concat([header, json]));
  }

  /** The chained digest, once the trailer is built. */
  get sha256(): string | null {
    return this.#sha256;
  }

  /** Bytes of the stream built so far. */
  get streamBytes(): number {
    return this.#streamBytes;
  }

  #frame(
    kind: number,
    disk: number,
    offset: number,
    length: number,
    payloadLength: number,
    digest: Buffer,
  ): Buffer {
    if (!this.#started || this.#sha256 !== null)
      throw new TernError(
        'internal',
        'a replication frame outside the stream (before its start or after its trailer)',
      );
    const h = frameHeader(kind, disk, offset, length, payloadLength, digest);
    this.#hash.update(h);
    this.#frames++;
    return h;
  }

  #emit(bytes: Buffer): Buffer {
    this.#streamBytes += bytes.length;
    return bytes;
  }
}

/** Reads exact byte counts from an async iterable of chunks, holding at most one chunk extra. */
class ByteReader {
  readonly #it: AsyncIterator<Uint8Array | string>;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #done = false;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(body: AsyncIterable<Uint8Array | string>) {
    this.#it = body[Symbol.asyncIterator]();
  }

  /** Exactly `n` bytes, or null when the stream ends first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.#buffered < n && !this.#done) {
      const r = await this.#it.next();
      if (r.done) this.#done = true;
      else if (r.value.length > 0) {
        const chunk =
          typeof r.value === 'string'
            ? Buffer.from(r.value)
            : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        this.#chunks.push(chunk);
        this.#buffered += chunk.length;
      }
    }
    if (this.#buffered < n) return null;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    this.consumed += n;
    return out;
  }

  /** Whether nothing follows. */
  async atEnd(): Promise<boolean> {
    return (await this.read(1)) === null;
  }

  /** Stops reading the body (the caller gave up on it). */
  async close(): Promise<void> {
    await this.#it.return?.();
  }
}

function parseJson<T>(bytes: Buffer, schema: TSchema, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw refuse(`its ${what} is not JSON`);
  }
  if (!Value.Check(schema, value)) {
    const first = [...Value.Errors(schema, value)][0];
    throw refuse(
      `its ${what} is out of shape (${first ? `${first.instancePath || '/'} ${first.message}` : 'invalid'})`,
    );
  }
  return value as T;
}

/**
 * The frames of a stream, each checked, the header first and the trailer last; throws a
 * TernError naming the first fault. A consumer must not commit anything before the trailer.
 */
export async function* decodeFrames(body: AsyncIterable<Uint8Array | string>): AsyncGenerator<Frame> {
  const reader = new ByteReader(body);
  try {
    const start = await reader.read(12);
    if (!start) throw refuse('it ends inside its header');
    if (!start.subarray(0, 8).equals(MAGIC)) throw refuse('it does not start with TERNRP01');
    const jsonLength = start.readUInt32BE(8);
    if (jsonLength > MAX_JSON_BYTES)
      throw refuse(`a header of ${jsonLength} bytes (at most ${MAX_JSON_BYTES})`);
    const json = await reader.read(jsonLength);
    if (!json) throw refuse('it ends inside its header');
    const header = parseJson<StreamHeader>(json, StreamHeader, 'header');
    if (new Set(header.disks.map((d) => d.name)).size !== header.disks.length)
      throw refuse('its header names a disk twice');
    const hash = createHash('sha256').update(start).update(json);
    yield { type: 'header', header };

    const cursors = new DiskCursors(header.disks);
    let frames = 0;
    let dataBytes = 0;
    for (;;) {
      const at = reader.consumed;
      const h = await reader.read(FRAME_HEADER_BYTES);
      if (!h) throw refuse(`it ends at byte ${reader.consumed} before its trailer`);
      const kind = h[0]!;
      const disk = h[1]!;
      if (h.readUInt16BE(2) !== 0) throw refuse(`a frame at byte ${at} with a non-zero reserved field`);
      const offset64 = h.readBigUInt64BE(4);
      if (offset64 > BigInt(Number.MAX_SAFE_INTEGER)) throw refuse(`a frame at offset ${offset64}`);
      const offset = Number(offset64);
      const length = h.readUInt32BE(12);
      const payloadLength = h.readUInt32BE(16);
      const digest = h.subarray(20, 52);
      if (payloadLength > MAX_FRAME_BYTES)
        throw refuse(`a frame payload of ${payloadLength} bytes (at most ${MAX_FRAME_BYTES})`);

      if (kind === FrameKind.trailer) {
        if (disk !== 0 || offset !== 0 || length !== payloadLength || payloadLength > MAX_JSON_BYTES)
          throw refuse('a malformed trailer');
        const expected = hash.digest();
        const json = await reader.read(payloadLength);
        if (!json) throw refuse('it ends inside its trailer');
        if (!digest.equals(expected))
          throw refuse("its chained digest differs from the trailer's: a frame was lost, added or changed");
        const trailer = parseJson<StreamTrailer>(json, StreamTrailer, 'trailer');
        if (trailer.frames !== frames || trailer.dataBytes !== dataBytes)
          throw refuse(
            `its trailer counts ${trailer.frames} frames and ${trailer.dataBytes} data bytes, ${frames} and ${dataBytes} arrived`,
          );
        const open = cursors.open();
        if (open.length > 0) throw refuse(`it ends before ${open.join(', ')} ended`);
        if (!(await reader.atEnd())) throw refuse('bytes follow its trailer');
        yield { type: 'trailer', trailer, sha256: expected.toString('hex'), streamBytes: reader.consumed };
        return;
      }

      hash.update(h);
      frames++;
      if (kind === FrameKind.end) {
        if (offset !== 0 || length !== 0 || payloadLength !== 0 || !digest.equals(NO_DIGEST))
          throw refuse(`a malformed end of disk ${disk}`);
        cursors.end(disk);
        yield { type: 'end', disk };
      } else if (kind === FrameKind.zeroes) {
        if (payloadLength !== 0 || !digest.equals(NO_DIGEST)) throw refuse('a zeroes frame with a payload');
        cursors.advance(disk, offset, length);
        yield { type: 'zeroes', disk, offset, length };
      } else if (kind === FrameKind.raw || kind === FrameKind.zstd) {
        cursors.advance(disk, offset, length);
        if (kind === FrameKind.raw && payloadLength !== length)
          throw refuse(`a raw frame of ${length} bytes carrying ${payloadLength}`);
        if (kind === FrameKind.zstd && payloadLength === 0) throw refuse('an empty zstd frame');
        const payload = await reader.read(payloadLength);
        if (!payload) throw refuse(`it ends inside a frame at byte ${at}`);
        let data: Buffer;
        if (kind === FrameKind.zstd) {
          try {
            // Bounded by the frame's length (at most 16 MiB): a crafted payload cannot make us allocate more.
            data = zlib.zstdDecompressSync(payload, { maxOutputLength: length });
          } catch (err) {
            throw refuse(`a zstd frame at byte ${at} does not decompress (${(err as Error).message})`);
          }
          if (data.length !== length)
            throw refuse(`a zstd frame at byte ${at} holds ${data.length} bytes, not ${length}`);
        } else data = payload;
        if (!createHash('sha256').update(data).digest().equals(digest))
          throw refuse(`the data at ${offset} of ${header.disks[disk]!.name} does not match its SHA-256`);
        dataBytes += length;
        yield { type: 'data', disk, offset, data };
      } else throw refuse(`a frame of unknown kind ${kind} at byte ${at}`);
    }
  } finally {
    await reader.close();
  }
}
