/**
 * A small read-only NBD server on a unix socket: it serves a backup's disks straight from the
 * datastore, so QEMU can run a VM on a disk whose data is still being restored (live restore: a
 * qcow2 overlay with this export as its backing file, streamed underneath) and tools can read a
 * backup as a block device. Fixed newstyle negotiation (NBD_OPT_GO, NBD_OPT_INFO, the old
 * NBD_OPT_EXPORT_NAME, NBD_OPT_LIST), simple or structured replies, `base:allocation` where the
 * source knows its zeros, reads; writes are refused (EPERM).
 *
 * The client is untrusted: every length is checked before its payload is read, a malformed
 * message ends that connection (never the server), and a failed read is an EIO reply, logged.
 */
import fs from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from '../../../log.ts';
import { ByteQueue } from './byte-queue.ts';
import {
  BASE_ALLOCATION,
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_READ,
  DEFAULT_MAX_PAYLOAD,
  FLAG_FIXED_NEWSTYLE,
  FLAG_HAS_FLAGS,
  FLAG_NO_ZEROES,
  FLAG_READ_ONLY,
  IHAVEOPT,
  INFO_BLOCK_SIZE,
  INFO_EXPORT,
  MAX_STRING_BYTES,
  NBDMAGIC,
  OPT_ABORT,
  OPT_GO,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  OPTION_REPLY_MAGIC,
  REP_ACK,
  REP_ERROR_BIT,
  REP_INFO,
  REP_META_CONTEXT,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_DATA,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
} from './protocol.ts';

const OPT_EXPORT_NAME = 1;
const OPT_LIST = 3;
const OPT_INFO = 6;
const OPT_LIST_META_CONTEXT = 9;
const REP_SERVER = 2;
const REP_ERR_UNSUP = REP_ERROR_BIT + 1;
const REP_ERR_INVALID = REP_ERROR_BIT + 3;
const REP_ERR_UNKNOWN = REP_ERROR_BIT + 6;
const CMD_WRITE = 1;
const CMD_FLUSH = 3;
const FLAG_SEND_FLUSH = 1 << 2;
const FLAG_CAN_MULTI_CONN = 1 << 8;
const EPERM = 1;
const EIO = 5;
const EINVAL = 22;

/** An option's data is at most a name, a few queries and their lengths. */
const MAX_OPTION_BYTES = 4 * MAX_STRING_BYTES;
/** Requests of one connection answered at once; more wait (TCP holds the client back). */
const MAX_IN_FLIGHT = 16;
/** Extents in one block status reply. */
const MAX_EXTENTS = 4096;
/** The one context id this server gives `base:allocation`. */
const ALLOCATION_ID = 1;

/** What an export serves: a fixed size and reads within it. */
export interface BlockSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Buffer>;
  /** Which of [offset, offset+length) reads as zeros, in extents; absent: all data. */
  zeroExtents?(offset: number, length: number): Promise<{ length: number; zero: boolean }[]>;
}

interface Connection {
  socket: net.Socket;
  queue: ByteQueue;
  structured: boolean;
  allocation: boolean;
}

export class NbdServer {
  readonly path: string;
  readonly #server: net.Server;
  readonly #exports: ReadonlyMap<string, BlockSource>;
  readonly #log: Logger | undefined;
  readonly #sockets = new Set<net.Socket>();

  private constructor(
    path: string,
    server: net.Server,
    exports: ReadonlyMap<string, BlockSource>,
    log?: Logger,
  ) {
    this.path = path;
    this.#server = server;
    this.#exports = exports;
    this.#log = log;
  }

  /** Serves `exports` (name → source) on a unix socket at `path` (replaced if a stale one is there). */
  static async listen(
    path: string,
    exports: ReadonlyMap<string, BlockSource>,
    log?: Logger,
  ): Promise<NbdServer> {
    await fs.rm(path, { force: true });
    const server = net.createServer();
    const nbd = new NbdServer(path, server, exports, log);
    server.on('connection', (socket) => nbd.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return nbd;
  }

  /** Stops listening and ends every connection. */
  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await fs.rm(this.path, { force: true });
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    const conn: Connection = { socket, queue: new ByteQueue(socket), structured: false, allocation: false };
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    this.#serve(conn)
      .catch((err: Error) => {
        if (!socket.destroyed) this.#log?.warn({ err: err.message }, 'NBD client dropped');
      })
      .finally(() => socket.destroy());
  }

  async #serve(conn: Connection): Promise<void> {
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBDMAGIC, 0);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    conn.socket.write(greeting);
    const clientFlags = (await conn.queue.take(4)).readUInt32BE(0);
    if (clientFlags & ~(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES)) throw new Error(`client flags ${clientFlags}`);
    const source = await this.#negotiate(conn, (clientFlags & FLAG_NO_ZEROES) !== 0);
    if (source) await this.#transmit(conn, source);
  }

  /** The options phase; the export chosen, or null when the client aborted. */
  async #negotiate(conn: Connection, noZeroes: boolean): Promise<BlockSource | null> {
    for (;;) {
      const header = await conn.queue.take(16);
      if (header.readBigUInt64BE(0) !== IHAVEOPT) throw new Error('option without its magic');
      const option = header.readUInt32BE(8);
      const length = header.readUInt32BE(12);
      if (length > MAX_OPTION_BYTES) throw new Error(`option of ${length} bytes`);
      const data = await conn.queue.take(length);
      const reply = (type: number, payload: Buffer = Buffer.alloc(0)) =>
        conn.socket.write(optionReply(option, type, payload));
      const refuse = (type: number, message: string) => reply(type, Buffer.from(message));

      if (option === OPT_EXPORT_NAME) {
        const source = this.#exports.get(data.toString('utf8'));
        if (!source) throw new Error('an unknown export asked for by name');
        const out = Buffer.alloc(10 + (noZeroes ? 0 : 124));
        out.writeBigUInt64BE(BigInt(source.size), 0);
        out.writeUInt16BE(transmissionFlags(), 8);
        conn.socket.write(out);
        return source;
      }
      if (option === OPT_ABORT) {
        reply(REP_ACK);
        return null;
      }
      if (option === OPT_LIST) {
        for (const name of this.#exports.keys()) reply(REP_SERVER, lengthPrefixed(name));
        reply(REP_ACK);
      } else if (option === OPT_STRUCTURED_REPLY) {
        if (length !== 0) refuse(REP_ERR_INVALID, 'structured reply takes no data');
        else {
          conn.structured = true;
          reply(REP_ACK);
        }
      } else if (option === OPT_SET_META_CONTEXT || option === OPT_LIST_META_CONTEXT) {
        const query = parseMetaQuery(data);
        if (!query) refuse(REP_ERR_INVALID, 'malformed metadata context query');
        else if (!this.#exports.has(query.exportName)) refuse(REP_ERR_UNKNOWN, 'no such export');
        else if (option === OPT_SET_META_CONTEXT && !conn.structured)
          refuse(REP_ERR_INVALID, 'metadata contexts need structured replies');
        else {
          const wanted = query.queries.length === 0 ? option === OPT_LIST_META_CONTEXT : true;
          const allocation =
            wanted &&
            (query.queries.length === 0 || query.queries.some((q) => q === BASE_ALLOCATION || q === 'base:'));
          if (allocation) reply(REP_META_CONTEXT, contextReply(ALLOCATION_ID, BASE_ALLOCATION));
          if (option === OPT_SET_META_CONTEXT) conn.allocation = allocation;
          reply(REP_ACK);
        }
      } else if (option === OPT_GO || option === OPT_INFO) {
        const name = parseGoName(data);
        const source = name === null ? undefined : this.#exports.get(name);
        if (name === null) refuse(REP_ERR_INVALID, 'malformed export request');
        else if (!source) refuse(REP_ERR_UNKNOWN, `no export named ${name.slice(0, 100)}`);
        else {
          const info = Buffer.alloc(12);
          info.writeUInt16BE(INFO_EXPORT, 0);
          info.writeBigUInt64BE(BigInt(source.size), 2);
          info.writeUInt16BE(transmissionFlags(), 10);
          reply(REP_INFO, info);
          const block = Buffer.alloc(14);
          block.writeUInt16BE(INFO_BLOCK_SIZE, 0);
          block.writeUInt32BE(1, 2);
          block.writeUInt32BE(4096, 6);
          block.writeUInt32BE(DEFAULT_MAX_PAYLOAD, 10);
          reply(REP_INFO, block);
          reply(REP_ACK);
          if (option === OPT_GO) return source;
        }
      } else refuse(REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  async #transmit(conn: Connection, source: BlockSource): Promise<void> {
    let inFlight = 0;
    let freed: (() => void) | null = null;
    for (;;) {
      if (inFlight >= MAX_IN_FLIGHT) await new Promise<void>((resolve) => (freed = resolve));
      const request = await conn.queue.take(REQUEST_BYTES);
      if (request.readUInt32BE(0) !== REQUEST_MAGIC) throw new Error('request without its magic');
      const type = request.readUInt16BE(6);
      const cookie = request.readBigUInt64BE(8);
      const big = request.readBigUInt64BE(16);
      const length = request.readUInt32BE(24);
      if (type === CMD_DISC) return;
      if (type === CMD_WRITE) {
        if (length > DEFAULT_MAX_PAYLOAD) throw new Error(`write of ${length} bytes`);
        await conn.queue.take(length);
        this.#error(conn, cookie, EPERM, 'the export is read-only');
        continue;
      }
      const offset = big > BigInt(source.size) ? source.size + 1 : Number(big);
      const inRange = offset + length <= source.size;
      if (type === CMD_FLUSH) this.#done(conn, cookie);
      else if (type !== CMD_READ && !(type === CMD_BLOCK_STATUS && conn.allocation))
        this.#error(conn, cookie, type === CMD_BLOCK_STATUS ? EINVAL : EPERM, `command ${type} refused`);
      else if (!inRange || length === 0 || (type === CMD_READ && length > DEFAULT_MAX_PAYLOAD))
        this.#error(conn, cookie, EINVAL, `${offset}+${length} is outside the export`);
      else {
        inFlight++;
        const work =
          type === CMD_READ
            ? this.#read(conn, source, cookie, offset, length)
            : this.#status(conn, source, cookie, offset, length);
        void work.finally(() => {
          inFlight--;
          const wake = freed;
          freed = null;
          wake?.();
        });
      }
    }
  }

  async #read(
    conn: Connection,
    source: BlockSource,
    cookie: bigint,
    offset: number,
    length: number,
  ): Promise<void> {
    let data: Buffer;
    try {
      data = await source.read(offset, length);
      if (data.length !== length) throw new Error(`the source gave ${data.length} bytes for ${length}`);
    } catch (err) {
      this.#log?.error({ err: (err as Error).message, offset, length }, 'NBD read failed');
      this.#error(conn, cookie, EIO, (err as Error).message);
      return;
    }
    if (!conn.structured) {
      conn.socket.write(Buffer.concat([simpleReply(cookie, 0), data]));
      return;
    }
    const at = Buffer.alloc(8);
    at.writeBigUInt64BE(BigInt(offset));
    conn.socket.write(
      Buffer.concat([
        structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, cookie, 8 + length),
        at,
        data,
      ]),
    );
  }

  async #status(
    conn: Connection,
    source: BlockSource,
    cookie: bigint,
    offset: number,
    length: number,
  ): Promise<void> {
    let extents: { length: number; zero: boolean }[];
    try {
      extents = source.zeroExtents ? await source.zeroExtents(offset, length) : [{ length, zero: false }];
    } catch (err) {
      this.#error(conn, cookie, EIO, (err as Error).message);
      return;
    }
    // A reply may describe less than was asked; the client asks again from where it stops.
    if (extents.length > MAX_EXTENTS) extents = extents.slice(0, MAX_EXTENTS);
    const payload = Buffer.alloc(4 + 8 * extents.length);
    payload.writeUInt32BE(ALLOCATION_ID, 0);
    extents.forEach((e, i) => {
      payload.writeUInt32BE(e.length, 4 + 8 * i);
      // A zero extent of a backup is a hole as well: nothing is stored for it.
      payload.writeUInt32BE(e.zero ? 3 : 0, 8 + 8 * i);
    });
    conn.socket.write(
      Buffer.concat([
        structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_BLOCK_STATUS, cookie, payload.length),
        payload,
      ]),
    );
  }

  #done(conn: Connection, cookie: bigint): void {
    conn.socket.write(
      conn.structured
        ? structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0)
        : simpleReply(cookie, 0),
    );
  }

  #error(conn: Connection, cookie: bigint, errno: number, message: string): void {
    if (!conn.structured) {
      conn.socket.write(simpleReply(cookie, errno));
      return;
    }
    const text = Buffer.from(message.slice(0, 200), 'utf8');
    const payload = Buffer.alloc(6 + text.length);
    payload.writeUInt32BE(errno, 0);
    payload.writeUInt16BE(text.length, 4);
    text.copy(payload, 6);
    conn.socket.write(
      Buffer.concat([structuredHeader(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, payload.length), payload]),
    );
  }
}

function transmissionFlags(): number {
  return FLAG_HAS_FLAGS | FLAG_READ_ONLY | FLAG_SEND_FLUSH | FLAG_CAN_MULTI_CONN;
}

function optionReply(option: number, type: number, payload: Buffer): Buffer {
  const out = Buffer.alloc(20 + payload.length);
  out.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(type, 12);
  out.writeUInt32BE(payload.length, 16);
  payload.copy(out, 20);
  return out;
}

function simpleReply(cookie: bigint, errno: number): Buffer {
  const out = Buffer.alloc(16);
  out.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  out.writeUInt32BE(errno, 4);
  out.writeBigUInt64BE(cookie, 8);
  return out;
}

function structuredHeader(flags: number, type: number, cookie: bigint, length: number): Buffer {
  const out = Buffer.alloc(20);
  out.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  out.writeBigUInt64BE(cookie, 8);
  out.writeUInt32BE(length, 16);
  return out;
}

function lengthPrefixed(s: string): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  const out = Buffer.alloc(4 + bytes.length);
  out.writeUInt32BE(bytes.length, 0);
  bytes.copy(out, 4);
  return out;
}

function contextReply(id: number, name: string): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(id);
  return Buffer.concat([out, Buffer.from(name, 'utf8')]);
}

/** A length-prefixed string at `at` in `data`, or null when it does not fit. */
function stringAt(data: Buffer, at: number): { value: string; end: number } | null {
  if (at + 4 > data.length) return null;
  const n = data.readUInt32BE(at);
  if (n > MAX_STRING_BYTES || at + 4 + n > data.length) return null;
  return { value: data.subarray(at + 4, at + 4 + n).toString('utf8'), end: at + 4 + n };
}

function parseGoName(data: Buffer): string | null {
  const name = stringAt(data, 0);
  if (!name || name.end + 2 > data.length) return null;
  const infos = data.readUInt16BE(name.end);
  return name.end + 2 + 2 * infos === data.length ? name.value : null;
}

function parseMetaQuery(data: Buffer): { exportName: string; queries: string[] } | null {
  const name = stringAt(data, 0);
  if (!name || name.end + 4 > data.length) return null;
  const count = data.readUInt32BE(name.end);
  if (count > 64) return null;
  const queries: string[] = [];
  let at = name.end + 4;
  for (let i = 0; i < count; i++) {
    const q = stringAt(data, at);
    if (!q) return null;
    queries.push(q.value);
    at = q.end;
  }
  return at === data.length ? { exportName: name.value, queries } : null;
}
