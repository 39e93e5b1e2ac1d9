/**
 * The NBD protocol's numbers and the fixed-size messages Tern sends and receives (pure). The
 * facts are from the protocol's specification (NetworkBlockDevice/nbd, doc/proto.md) and QEMU's
 * docs/interop/nbd.rst for the `qemu:` metadata namespace. Only what backup and restore need:
 * fixed newstyle handshake, structured replies, metadata contexts, reads, block status, and
 * the writes, zeroes and flushes of a restore.
 * Integers on the wire are big-endian.
 */

export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Transmission flags. */
export const FLAG_HAS_FLAGS = 1 << 0;
export const FLAG_READ_ONLY = 1 << 1;
export const FLAG_SEND_FLUSH = 1 << 2;
export const FLAG_SEND_WRITE_ZEROES = 1 << 6;

export const OPT_ABORT = 2;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_SET_META_CONTEXT = 10;

export const REP_ACK = 1;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
/** Error replies have bit 31 set. */
export const REP_ERROR_BIT = 0x80000000;
const REP_ERRORS: Record<number, string> = {
  1: 'unsupported',
  2: 'refused by policy',
  3: 'invalid',
  4: 'unsupported on this platform',
  5: 'TLS required',
  6: 'unknown export',
  7: 'server shutting down',
  8: 'block size negotiation required',
  9: 'too big',
};

export const INFO_EXPORT = 0;
export const INFO_BLOCK_SIZE = 3;

export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 0x8001;
export const REPLY_TYPE_ERROR_OFFSET = 0x8002;
/** Error chunk types have bit 15 set. */
export const REPLY_TYPE_ERROR_BIT = 0x8000;

/** `base:allocation` flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;
/** `qemu:dirty-bitmap:NAME` flag. */
export const STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION = 'base:allocation';
export const dirtyBitmapContext = (bitmap: string) => `qemu:dirty-bitmap:${bitmap}`;

/** Strings the protocol carries (names, messages) are at most 4096 bytes. */
export const MAX_STRING_BYTES = 4096;
/** The payload limit when the server states none; what QEMU allows. */
export const DEFAULT_MAX_PAYLOAD = 32 * 1024 * 1024;
/** A server SHOULD NOT send more extents than this in one block status chunk. */
export const MAX_EXTENTS_PER_CHUNK = 1 << 20;

const ERRNO: Record<number, string> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};

export function errnoName(errno: number): string {
  return ERRNO[errno] ?? `error ${errno}`;
}

export function optionErrorName(type: number): string {
  return REP_ERRORS[type - REP_ERROR_BIT] ?? `error reply ${type - REP_ERROR_BIT}`;
}

/** A server's string, fit for a log line: valid UTF-8 replaced, control characters dropped, bounded. */
export function serverText(bytes: Uint8Array, max = 200): string {
  const text = Buffer.from(bytes)
    .toString('utf8')
    .replace(/\p{Cc}/gu, ' ')
    .trim();
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.alloc(16 + data.length);
  out.writeBigUInt64BE(IHAVEOPT, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(data.length, 12);
  data.copy(out, 16);
  return out;
}

const lengthPrefixed = (s: string) => {
  const bytes = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
};

/** NBD_OPT_SET_META_CONTEXT's data: the export name, then each query. */
export function encodeMetaContextQuery(exportName: string, queries: readonly string[]): Buffer {
  const count = Buffer.alloc(4);
  count.writeUInt32BE(queries.length);
  return Buffer.concat([lengthPrefixed(exportName), count, ...queries.map(lengthPrefixed)]);
}

/** NBD_OPT_GO's data: the export name and the information asked for. */
export function encodeGo(exportName: string, infos: readonly number[]): Buffer {
  const list = Buffer.alloc(2 + 2 * infos.length);
  list.writeUInt16BE(infos.length, 0);
  infos.forEach((info, i) => {
    list.writeUInt16BE(info, 2 + 2 * i);
  });
  return Buffer.concat([lengthPrefixed(exportName), list]);
}

export const REQUEST_BYTES = 28;

export function encodeRequest(
  type: number,
  flags: number,
  cookie: bigint,
  offset: number,
  length: number,
): Buffer {
  const out = Buffer.alloc(REQUEST_BYTES);
  out.writeUInt32BE(REQUEST_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  out.writeBigUInt64BE(cookie, 8);
  out.writeBigUInt64BE(BigInt(offset), 16);
  out.writeUInt32BE(length, 24);
  return out;
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export const OPTION_REPLY_HEADER_BYTES = 20;

/** Null when the magic is wrong. */
export function decodeOptionReplyHeader(b: Buffer): OptionReplyHeader | null {
  if (b.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) return null;
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/** After the 4-byte magic: the rest of a structured reply chunk's header. */
export const STRUCTURED_REST_BYTES = 16;
export interface StructuredHeader {
  flags: number;
  type: number;
  cookie: bigint;
  length: number;
}
export function decodeStructuredRest(b: Buffer): StructuredHeader {
  return {
    flags: b.readUInt16BE(0),
    type: b.readUInt16BE(2),
    cookie: b.readBigUInt64BE(4),
    length: b.readUInt32BE(12),
  };
}

/** After the 4-byte magic: the rest of a simple reply. */
export const SIMPLE_REST_BYTES = 12;
export function decodeSimpleRest(b: Buffer): { error: number; cookie: bigint } {
  return { error: b.readUInt32BE(0), cookie: b.readBigUInt64BE(4) };
}

/** An error chunk's payload: errno, message, and for ERROR_OFFSET the offset; null if malformed. */
export function decodeErrorChunk(
  type: number,
  payload: Buffer,
): { errno: number; message: string; offset: number | null } | null {
  if (payload.length < 6) return null;
  const errno = payload.readUInt32BE(0);
  const messageLength = payload.readUInt16BE(4);
  const tail = type === REPLY_TYPE_ERROR_OFFSET ? 8 : 0;
  if (6 + messageLength + tail > payload.length || messageLength > MAX_STRING_BYTES) return null;
  const message = serverText(payload.subarray(6, 6 + messageLength));
  const offset = tail ? Number(payload.readBigUInt64BE(6 + messageLength)) : null;
  return { errno, message, offset };
}
