/**
 * Tern's NBD client: reads a disk's point-in-time view and asks which parts are allocated or
 * dirty, over a unix socket or TCP, from QEMU's NBD server or qemu-nbd; and writes a restored
 * disk onto a writable export (qemu-nbd over the target volume).
 *
 * The server is untrusted input: every reply is checked (magic, cookie, type, bounds, coverage)
 * before it is used, every length before anything is read or allocated, and each request has a
 * deadline. A server that breaks the protocol gets a hard disconnect and a TernError
 * ('protocol_error'); one that reports an error keeps the connection usable and the request
 * fails with TernError('storage_error') carrying its errno. Requests go one at a time.
 */
import net from 'node:net';
import { TernError } from '../../../errors.ts';
import { decodeBlockStatus, type Extent, MAX_BLOCK_STATUS_PAYLOAD } from './block-status.ts';
import { ByteQueue } from './byte-queue.ts';
import { type ExportInfo, handshake, OptionRefused } from './handshake.ts';
import {
  CMD_BLOCK_STATUS,
  CMD_DISC,
  CMD_FLUSH,
  CMD_READ,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  DEFAULT_MAX_PAYLOAD,
  decodeErrorChunk,
  decodeSimpleRest,
  decodeStructuredRest,
  encodeRequest,
  FLAG_READ_ONLY,
  FLAG_SEND_FLUSH,
  FLAG_SEND_WRITE_ZEROES,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR_BIT,
  REPLY_TYPE_NONE,
  SIMPLE_REPLY_MAGIC,
  SIMPLE_REST_BYTES,
  STRUCTURED_REPLY_MAGIC,
  STRUCTURED_REST_BYTES,
} from './protocol.ts';
import { ProtocolViolation, ReadAssembly, ServerError } from './read-reply.ts';

export type NbdAddress = { path: string } | { host: string; port: number };

export interface NbdConnectOptions {
  /** The export's name ('' for the default export). */
  exportName: string;
  /** Metadata contexts to select, e.g. `base:allocation`, `qemu:dirty-bitmap:NAME`. */
  metaContexts?: readonly string[];
  /** Deadline of the handshake and of each request (default 60 s). */
  timeoutMs?: number;
}

/** Reads above this are split, whatever the server allows: the buffer of one reply is this large. */
const MAX_READ = DEFAULT_MAX_PAYLOAD;

export class NbdClient {
  readonly #socket: net.Socket;
  readonly #queue: ByteQueue;
  readonly #timeoutMs: number;
  readonly #where: string;
  #info!: ExportInfo;
  #cookie = 0n;
  #busy: Promise<unknown> = Promise.resolve();
  #broken: TernError | null = null;

  private constructor(socket: net.Socket, timeoutMs: number, where: string) {
    this.#socket = socket;
    this.#queue = new ByteQueue(socket);
    this.#timeoutMs = timeoutMs;
    this.#where = where;
  }

  static async connect(address: NbdAddress, options: NbdConnectOptions): Promise<NbdClient> {
    const where = 'path' in address ? address.path : `${address.host}:${address.port}`;
    const socket = net.connect(address as net.NetConnectOpts);
    socket.setNoDelay(true);
    const client = new NbdClient(socket, options.timeoutMs ?? 60_000, where);
    try {
      await client.#deadline('handshake', async () => {
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', reject);
        });
        client.#info = await handshake(
          client.#queue,
          (b) => socket.write(b),
          options.exportName,
          options.metaContexts ?? [],
        );
      });
    } catch (err) {
      socket.destroy();
      throw client.#broken ?? client.#wrap('handshake', err);
    }
    const missing = (options.metaContexts ?? []).filter(
      (c) => ![...client.#info.contexts.values()].includes(c),
    );
    if (missing.length > 0) {
      await client.disconnect();
      throw new TernError(
        'not_found',
        `NBD export ${options.exportName} at ${where} offers no ${missing.join(', ')}`,
        {
          missing,
        },
      );
    }
    return client;
  }

  get size(): number {
    return this.#info.size;
  }

  get info(): Readonly<ExportInfo> {
    return this.#info;
  }

  /** `length` bytes from `offset`, holes as zeroes. */
  async read(offset: number, length: number): Promise<Buffer> {
    this.#checkRange(offset, length);
    const min = this.#info.minBlock;
    if (offset % min !== 0 || (length % min !== 0 && offset + length !== this.#info.size))
      throw new TernError('invalid_request', `read ${offset}+${length} is not aligned to ${min} bytes`);
    const step = this.#step();
    if (length <= step) return this.#serial(() => this.#readOnce(offset, length));
    const parts: Buffer[] = [];
    for (let at = offset; at < offset + length; at += step) {
      const n = Math.min(step, offset + length - at);
      parts.push(await this.#serial(() => this.#readOnce(at, n)));
    }
    return Buffer.concat(parts);
  }

  /**
   * The extents of `context` over [offset, offset+length), merged where flags repeat. Asks again
   * where a reply stopped short, so the result always covers the whole range.
   */
  async extents(context: string, offset: number, length: number): Promise<Extent[]> {
    this.#checkRange(offset, length);
    const id = [...this.#info.contexts].find(([, name]) => name === context)?.[0];
    if (id === undefined)
      throw new TernError('invalid_request', `metadata context ${context} was not selected`);
    const out: Extent[] = [];
    const end = offset + length;
    for (let at = offset; at < end; ) {
      // A request's length is 32 bits; ask in pieces the size of a large read.
      const ask = Math.min(end - at, 2 ** 31);
      const byContext = await this.#serial(() => this.#blockStatusOnce(at, ask));
      const extents = byContext.get(id)!;
      for (const e of extents) {
        const last = out.at(-1);
        if (last && last.flags === e.flags && last.offset + last.length === e.offset) last.length += e.length;
        else out.push({ ...e });
      }
      at = extents.at(-1)!.offset + extents.at(-1)!.length;
    }
    return out;
  }

  /** Writes `data` at `offset`; split at the server's maximum payload. */
  async write(offset: number, data: Uint8Array): Promise<void> {
    this.#checkWritable(offset, data.length);
    const step = this.#step();
    for (let at = 0; at < data.length; at += step) {
      const piece = data.subarray(at, Math.min(data.length, at + step));
      await this.#serial(() => this.#commandOnce(CMD_WRITE, offset + at, piece.length, piece));
    }
  }

  /**
   * Makes [offset, offset+length) read as zeroes, leaving holes where the image can (a qcow2
   * zero cluster costs no data); written out as zeroes when the server offers no such command.
   */
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.#checkWritable(offset, length);
    if (!(this.#info.transmissionFlags & FLAG_SEND_WRITE_ZEROES)) {
      const step = this.#step();
      const zeroes = Buffer.alloc(Math.min(step, length));
      for (let at = 0; at < length; at += step)
        await this.write(offset + at, zeroes.subarray(0, Math.min(step, length - at)));
      return;
    }
    // A request's length is 32 bits.
    const step = 2 ** 31 - (2 ** 31 % Math.max(this.#info.minBlock, 4096));
    for (let at = 0; at < length; at += step) {
      const n = Math.min(step, length - at);
      await this.#serial(() => this.#commandOnce(CMD_WRITE_ZEROES, offset + at, n));
    }
  }

  /** Makes every write so far durable on the server's storage (a no-op when it has no cache to flush). */
  async flush(): Promise<void> {
    if (!(this.#info.transmissionFlags & FLAG_SEND_FLUSH)) return;
    await this.#serial(() => this.#commandOnce(CMD_FLUSH, 0, 0));
  }

  /** Ends the session politely (NBD_CMD_DISC), then closes; never throws. */
  async disconnect(): Promise<void> {
    if (!this.#broken && !this.#socket.destroyed) {
      await this.#busy.catch(() => {});
      this.#socket.end(encodeRequest(CMD_DISC, 0, this.#nextCookie(), 0, 0));
      this.#broken = new TernError('unavailable', `NBD connection to ${this.#where} was closed`);
      const closed = new Promise<void>((resolve) => this.#socket.once('close', () => resolve()));
      const timer = setTimeout(() => this.#socket.destroy(), 5000);
      await closed;
      clearTimeout(timer);
    }
    this.#socket.destroy();
  }

  #checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length <= 0)
      throw new TernError('invalid_request', `bad range ${offset}+${length}`);
    if (offset + length > this.#info.size)
      throw new TernError(
        'invalid_request',
        `range ${offset}+${length} is past the end of the export (${this.#info.size})`,
      );
  }

  #checkWritable(offset: number, length: number): void {
    if (this.#info.transmissionFlags & FLAG_READ_ONLY)
      throw new TernError('invalid_request', `NBD export at ${this.#where} is read-only`);
    this.#checkRange(offset, length);
    const min = this.#info.minBlock;
    if (offset % min !== 0 || (length % min !== 0 && offset + length !== this.#info.size))
      throw new TernError('invalid_request', `write ${offset}+${length} is not aligned to ${min} bytes`);
  }

  /** The largest payload of one request, a multiple of the server's minimum block. */
  #step(): number {
    const max = Math.min(MAX_READ, this.#info.maxPayload);
    return max - (max % this.#info.minBlock);
  }

  #nextCookie(): bigint {
    this.#cookie = (this.#cookie + 1n) & 0xffffffffffffffffn;
    return this.#cookie;
  }

  /** One request at a time; a broken connection fails every later one with its first error. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#busy
      .catch(() => {})
      .then(() => {
        if (this.#broken) throw this.#broken;
        return this.#deadline('request', fn);
      });
    this.#busy = run;
    return run;
  }

  async #deadline<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new TernError(
          'timeout',
          `NBD ${what} to ${this.#where}: no answer within ${this.#timeoutMs} ms`,
        );
        this.#breakWith(err);
        reject(err);
      }, this.#timeoutMs);
    });
    try {
      return await Promise.race([fn(), timeout]);
    } catch (err) {
      throw this.#broken ?? this.#wrap(what, err);
    } finally {
      clearTimeout(timer);
    }
  }

  #wrap(what: string, err: unknown): TernError {
    if (err instanceof TernError) return err;
    if (err instanceof OptionRefused)
      return new TernError(
        err.unknownExport ? 'not_found' : 'unavailable',
        `NBD ${what} at ${this.#where}: ${err.message}`,
      );
    if (err instanceof ServerError)
      return new TernError('storage_error', `NBD ${what} at ${this.#where}: ${err.message}`, {
        errno: err.errno,
      });
    const violation = err instanceof ProtocolViolation;
    return this.#breakWith(
      new TernError(
        violation ? 'protocol_error' : 'unavailable',
        `NBD ${what} at ${this.#where}: ${(err as Error).message}`,
        undefined,
        { cause: err },
      ),
    );
  }

  /** A hard disconnect: whatever comes next on this connection cannot be trusted. */
  #breakWith(err: TernError): TernError {
    this.#broken ??= err;
    this.#queue.fail(err);
    this.#socket.destroy();
    return this.#broken;
  }

  async #readOnce(offset: number, length: number): Promise<Buffer> {
    const cookie = this.#nextCookie();
    this.#socket.write(encodeRequest(CMD_READ, 0, cookie, offset, length));
    const assembly = new ReadAssembly(offset, length);
    for (;;) {
      const magic = (await this.#queue.take(4)).readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) throw new ProtocolViolation('a simple reply to a read');
      if (magic !== STRUCTURED_REPLY_MAGIC)
        throw new ProtocolViolation(`reply magic 0x${magic.toString(16)}`);
      const h = decodeStructuredRest(await this.#queue.take(STRUCTURED_REST_BYTES));
      if (h.cookie !== cookie)
        throw new ProtocolViolation(`reply for cookie ${h.cookie}, expected ${cookie}`);
      const done = (h.flags & REPLY_FLAG_DONE) !== 0;
      if (h.type === REPLY_TYPE_NONE) {
        if (h.length !== 0 || !done) throw new ProtocolViolation('a none chunk with a payload or not final');
        return assembly.finish();
      }
      if (h.length > assembly.maxPayload(h.type))
        throw new ProtocolViolation(`chunk type ${h.type} of ${h.length} bytes for a read of ${length}`);
      assembly.accept(h.type, await this.#queue.take(h.length));
      if (done) return assembly.finish();
    }
  }

  /**
   * A write, write-zeroes or flush: its reply carries no data. A server with structured replies
   * may answer with a simple reply or with structured chunks (an error chunk, then done).
   */
  async #commandOnce(type: number, offset: number, length: number, payload?: Uint8Array): Promise<void> {
    const cookie = this.#nextCookie();
    const header = encodeRequest(type, 0, cookie, offset, length);
    this.#socket.write(payload ? Buffer.concat([header, payload]) : header);
    let error: ServerError | null = null;
    for (let chunks = 0; ; chunks++) {
      const magic = (await this.#queue.take(4)).readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        if (chunks > 0) throw new ProtocolViolation('a simple reply amid structured chunks');
        const r = decodeSimpleRest(await this.#queue.take(SIMPLE_REST_BYTES));
        if (r.cookie !== cookie)
          throw new ProtocolViolation(`reply for cookie ${r.cookie}, expected ${cookie}`);
        if (r.error !== 0) throw new ServerError(r.error, '');
        return;
      }
      if (magic !== STRUCTURED_REPLY_MAGIC)
        throw new ProtocolViolation(`reply magic 0x${magic.toString(16)}`);
      const h = decodeStructuredRest(await this.#queue.take(STRUCTURED_REST_BYTES));
      if (h.cookie !== cookie)
        throw new ProtocolViolation(`reply for cookie ${h.cookie}, expected ${cookie}`);
      if (chunks > 64) throw new ProtocolViolation('endless reply chunks');
      const done = (h.flags & REPLY_FLAG_DONE) !== 0;
      if (h.type & REPLY_TYPE_ERROR_BIT) {
        if (h.length > 6 + 4096 + 8) throw new ProtocolViolation(`error chunk of ${h.length} bytes`);
        const e = decodeErrorChunk(h.type, await this.#queue.take(h.length));
        if (!e) throw new ProtocolViolation('malformed error chunk');
        error ??= new ServerError(e.errno, e.message);
      } else if (h.type === REPLY_TYPE_NONE) {
        if (h.length !== 0 || !done) throw new ProtocolViolation('a none chunk with a payload or not final');
      } else throw new ProtocolViolation(`chunk type ${h.type} in a reply without data`);
      if (!done) continue;
      if (error) throw error;
      return;
    }
  }

  async #blockStatusOnce(offset: number, length: number): Promise<Map<number, Extent[]>> {
    const cookie = this.#nextCookie();
    this.#socket.write(encodeRequest(CMD_BLOCK_STATUS, 0, cookie, offset, length));
    const found = new Map<number, Extent[]>();
    let error: ServerError | null = null;
    for (let chunks = 0; ; chunks++) {
      const magic = (await this.#queue.take(4)).readUInt32BE(0);
      if (magic === SIMPLE_REPLY_MAGIC) {
        // Allowed only without a payload, so only to report an error.
        const r = decodeSimpleRest(await this.#queue.take(SIMPLE_REST_BYTES));
        if (r.cookie !== cookie)
          throw new ProtocolViolation(`reply for cookie ${r.cookie}, expected ${cookie}`);
        if (r.error === 0) throw new ProtocolViolation('block status answered with no status');
        throw new ServerError(r.error, '');
      }
      if (magic !== STRUCTURED_REPLY_MAGIC)
        throw new ProtocolViolation(`reply magic 0x${magic.toString(16)}`);
      const h = decodeStructuredRest(await this.#queue.take(STRUCTURED_REST_BYTES));
      if (h.cookie !== cookie)
        throw new ProtocolViolation(`reply for cookie ${h.cookie}, expected ${cookie}`);
      if (chunks > this.#info.contexts.size + 64) throw new ProtocolViolation('endless block status chunks');
      const done = (h.flags & REPLY_FLAG_DONE) !== 0;
      if (h.type === REPLY_TYPE_BLOCK_STATUS) {
        if (h.length > MAX_BLOCK_STATUS_PAYLOAD)
          throw new ProtocolViolation(`block status of ${h.length} bytes`);
        const { contextId, extents } = decodeBlockStatus(await this.#queue.take(h.length), offset, length);
        if (!this.#info.contexts.has(contextId))
          throw new ProtocolViolation(`status for unknown context ${contextId}`);
        if (found.has(contextId)) throw new ProtocolViolation(`two status chunks for context ${contextId}`);
        found.set(contextId, extents);
      } else if (h.type & REPLY_TYPE_ERROR_BIT) {
        if (h.length > 6 + 4096 + 8) throw new ProtocolViolation(`error chunk of ${h.length} bytes`);
        const e = decodeErrorChunk(h.type, await this.#queue.take(h.length));
        if (!e) throw new ProtocolViolation('malformed error chunk');
        error ??= new ServerError(e.errno, e.message);
      } else if (h.type === REPLY_TYPE_NONE) {
        if (h.length !== 0 || !done) throw new ProtocolViolation('a none chunk with a payload or not final');
      } else throw new ProtocolViolation(`chunk type ${h.type} in a reply to block status`);
      if (!done) continue;
      if (error) throw error;
      if (found.size !== this.#info.contexts.size)
        throw new ProtocolViolation(`status for ${found.size} of ${this.#info.contexts.size} contexts`);
      return found;
    }
  }
}
