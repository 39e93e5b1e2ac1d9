/**
 * Puts the chunks of a structured reply to NBD_CMD_READ back together (pure). The server may
 * send data and hole chunks in any order; each must lie inside the request and overlap no earlier
 * one, and together they must cover the whole request, else the reply is a protocol violation.
 * An error chunk makes the read fail with the server's errno and message.
 */
import { decodeErrorChunk, errnoName, REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE } from './protocol.ts';

/** What went wrong, said by a server that keeps the protocol (the connection stays usable). */
export class ServerError extends Error {
  readonly errno: number;
  constructor(errno: number, message: string) {
    super(message ? `${errnoName(errno)}: ${message}` : errnoName(errno));
    this.errno = errno;
  }
}

/** The server broke the protocol: the connection cannot be trusted any further. */
export class ProtocolViolation extends Error {}

/** More error chunks than this in one reply is a server gone wrong, not a report. */
const MAX_ERROR_CHUNKS = 64;

export class ReadAssembly {
  readonly offset: number;
  readonly length: number;
  readonly data: Buffer;
  /** Covered ranges relative to `offset`, sorted, merged when adjacent: [start, end) pairs. */
  readonly #covered: number[] = [];
  #errors = 0;
  #firstError: ServerError | null = null;

  constructor(offset: number, length: number) {
    this.offset = offset;
    this.length = length;
    // Zeroed: a hole chunk then costs nothing.
    this.data = Buffer.alloc(length);
  }

  /** The largest payload a chunk of this reply may carry (checked before it is read). */
  maxPayload(type: number): number {
    if (type === REPLY_TYPE_OFFSET_DATA) return 8 + this.length;
    if (type === REPLY_TYPE_OFFSET_HOLE) return 12;
    return 6 + 4096 + 8;
  }

  /** Takes one chunk; throws ProtocolViolation for anything the protocol forbids. */
  accept(type: number, payload: Buffer): void {
    if (type === REPLY_TYPE_OFFSET_DATA) {
      if (payload.length < 9) throw new ProtocolViolation(`data chunk of ${payload.length} bytes`);
      const at = this.#place(payload.readBigUInt64BE(0), payload.length - 8);
      payload.copy(this.data, at, 8);
    } else if (type === REPLY_TYPE_OFFSET_HOLE) {
      if (payload.length !== 12) throw new ProtocolViolation(`hole chunk of ${payload.length} bytes`);
      const size = payload.readUInt32BE(8);
      if (size === 0) throw new ProtocolViolation('hole of 0 bytes');
      this.#place(payload.readBigUInt64BE(0), size);
    } else if (type & 0x8000) {
      const e = decodeErrorChunk(type, payload);
      if (!e) throw new ProtocolViolation(`malformed error chunk of ${payload.length} bytes`);
      if (++this.#errors > MAX_ERROR_CHUNKS) throw new ProtocolViolation('endless error chunks');
      const where = e.offset === null ? '' : ` at offset ${e.offset}`;
      this.#firstError ??= new ServerError(e.errno, `${e.message}${where}`.trim());
    } else throw new ProtocolViolation(`chunk type ${type} in a reply to a read`);
  }

  /** At the final chunk: the bytes read, or the server's error. */
  finish(): Buffer {
    if (this.#firstError) throw this.#firstError;
    const whole = this.#covered.length === 2 && this.#covered[0] === 0 && this.#covered[1] === this.length;
    if (!whole)
      throw new ProtocolViolation(`read reply covers ${this.#coveredBytes()} of ${this.length} bytes`);
    return this.data;
  }

  #coveredBytes(): number {
    let sum = 0;
    for (let i = 0; i < this.#covered.length; i += 2) sum += this.#covered[i + 1]! - this.#covered[i]!;
    return sum;
  }

  /** Records [offset, offset+size) as covered; returns its position in `data`. */
  #place(absolute: bigint, size: number): number {
    const rel = absolute - BigInt(this.offset);
    if (rel < 0n || rel + BigInt(size) > BigInt(this.length))
      throw new ProtocolViolation(
        `chunk ${absolute}+${size} outside the request ${this.offset}+${this.length}`,
      );
    const start = Number(rel);
    const end = start + size;
    const c = this.#covered;
    // First range whose end is after `start`: binary search over the sorted pairs.
    let lo = 0;
    let hi = c.length / 2;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (c[2 * mid + 1]! <= start) lo = mid + 1;
      else hi = mid;
    }
    if (lo < c.length / 2 && c[2 * lo]! < end)
      throw new ProtocolViolation(`chunk at ${absolute} overlaps another`);
    // Merge with the neighbours it touches, so in-order replies keep the list at one range.
    const touchesLeft = lo > 0 && c[2 * lo - 1] === start;
    const touchesRight = lo < c.length / 2 && c[2 * lo] === end;
    if (touchesLeft && touchesRight) {
      c[2 * lo - 1] = c[2 * lo + 1]!;
      c.splice(2 * lo, 2);
    } else if (touchesLeft) c[2 * lo - 1] = end;
    else if (touchesRight) c[2 * lo] = start;
    else c.splice(2 * lo, 0, start, end);
    return start;
  }
}
