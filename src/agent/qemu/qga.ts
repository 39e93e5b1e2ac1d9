/**
 * Client for the QEMU guest agent (qemu-ga) over the VM's virtio-serial channel.
 *
 * The guest side is untrusted and may be absent, slow, restarted or hostile. Every command
 * has a timeout, replies are bounded in size, and after any doubt (timeout, oversized or
 * malformed reply) the next command first resynchronises with guest-sync-delimited: every
 * reply until the one carrying our sync id is stale (replies to commands or syncs that timed
 * out, which a guest agent that was not up yet answers late, in order) and is skipped; a 0xFF
 * sentinel ends any partial line.
 */
import net from 'node:net';
import { TernError } from '../../errors.ts';
import { JsonLineReader } from '../../http/json-lines.ts';
import { guestMessage } from './guest-info.ts';

export const maxGuestReplyBytes = 1024 * 1024;

type Waiter = { resolve: (v: unknown) => void; reject: (e: Error) => void };

/** The guest agent's own error reply to a command, as opposed to a failure on the way to it. */
const replyError = (desc: string, errorClass: string) =>
  new TernError('guest_error', `guest agent error: ${desc}`, { guestAgentError: desc, class: errorClass });

export class QgaClient {
  readonly #path: string;
  #socket: net.Socket | null = null;
  #synced = false;
  /** The id of the sync in flight: until its reply, everything else is stale. */
  #expectSync: number | null = null;
  #waiter: Waiter | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  #syncId = Math.floor(Math.random() * 1e9);
  #reader: JsonLineReader;
  #decoder = new TextDecoder();
  readonly #onProblem: (message: string) => void;

  constructor(path: string, onProblem: (message: string) => void = () => {}) {
    this.#path = path;
    this.#onProblem = onProblem;
    this.#reader = new JsonLineReader(
      maxGuestReplyBytes,
      (value) => this.#deliver(value),
      (message) => {
        if (this.#expectSync === null) this.#fail(new TernError('guest_error', `guest agent: ${message}`));
      },
    );
  }

  /**
   * Runs one command and returns its reply. `maxReplyBytes` raises the bound on this command's
   * reply (a command's captured output). An error reply is a guest_error whose details carry
   * the guest agent's message and error class.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: { timeoutMs?: number; maxReplyBytes?: number } = {},
  ): Promise<T> {
    return this.#enqueue(async () => {
      const timeoutMs = opts.timeoutMs ?? 5000;
      if (!this.#synced) await this.#sync(Math.min(timeoutMs, 3000));
      this.#reader.maxLine = Math.max(opts.maxReplyBytes ?? 0, maxGuestReplyBytes);
      try {
        return (await this.#request(this.#payload(command, args), timeoutMs, command)) as T;
      } finally {
        this.#reader.maxLine = maxGuestReplyBytes;
      }
    });
  }

  /**
   * Runs a command that sends no reply when it succeeds (guest-shutdown: the guest goes down
   * instead) but does send its error when it fails: waits up to `errorWithinMs` for that error and
   * fails with the guest agent's own message. Silence, the channel closing, or `accepted` settling
   * first (the host sees the guest going down) means the guest agent took the command.
   */
  executeNoReply(
    command: string,
    args: Record<string, unknown> | undefined,
    opts: { errorWithinMs: number; accepted?: Promise<unknown> },
  ): Promise<void> {
    return this.#enqueue(async () => {
      if (!this.#synced) await this.#sync(3000);
      const socket = this.#socket;
      if (!socket) throw new TernError('guest_error', 'guest agent channel is not open');
      // Whatever comes after we stop listening (a late error) is stale to the next command.
      this.#synced = false;
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          resolve: () => done(),
          // Only the guest agent's own error reply fails the command; a channel that closes
          // under it is a guest going down, and a garbled line proves nothing either way.
          reject: (e) => done((e as TernError).details?.guestAgentError !== undefined ? e : undefined),
        };
        const done = (err?: Error) => {
          clearTimeout(timer);
          if (this.#waiter === waiter) this.#waiter = null;
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => done(), opts.errorWithinMs);
        opts.accepted?.then(
          () => done(),
          () => done(),
        );
        this.#waiter = waiter;
        socket.write(`${this.#payload(command, args)}\n`);
      });
    });
  }

  #enqueue<T>(run: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(run, run);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #payload(command: string, args?: Record<string, unknown>): string {
    return JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) });
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = null;
    this.#synced = false;
  }

  async #connect(): Promise<net.Socket> {
    if (this.#socket && !this.#socket.destroyed) return this.#socket;
    const socket = net.createConnection(this.#path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err) =>
        reject(new TernError('guest_error', `cannot open the guest agent channel: ${err.message}`)),
      );
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket === socket) {
        this.#socket = null;
        this.#synced = false;
        this.#fail(new TernError('guest_error', 'guest agent channel closed'));
      }
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket = socket;
    return socket;
  }

  #onData(chunk: Buffer): void {
    let start = 0;
    for (let at = chunk.indexOf(0xff); at >= 0; at = chunk.indexOf(0xff, start)) {
      this.#reader.push(this.#decoder.decode(chunk.subarray(start, at)));
      // A sentinel starts a fresh reply: whatever partial line came before it is garbage.
      this.#reader.reset();
      this.#decoder = new TextDecoder();
      start = at + 1;
    }
    this.#reader.push(this.#decoder.decode(chunk.subarray(start), { stream: true }));
  }

  async #sync(timeoutMs: number): Promise<void> {
    const socket = await this.#connect();
    const id = ++this.#syncId;
    this.#expectSync = id;
    // A leading 0xFF makes qemu-ga drop any partial command it was parsing.
    socket.write(Buffer.from([0xff]));
    try {
      await this.#request(
        JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id } }),
        timeoutMs,
        'guest-sync-delimited',
      );
    } finally {
      this.#expectSync = null;
    }
    this.#synced = true;
  }

  #request(payload: string, timeoutMs: number, command: string): Promise<unknown> {
    const socket = this.#socket;
    if (!socket) return Promise.reject(new TernError('guest_error', 'guest agent channel is not open'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = null;
        this.#synced = false;
        reject(new TernError('timeout', `guest agent did not answer ${command} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#waiter = {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      socket.write(`${payload}\n`);
    });
  }

  #deliver(value: unknown): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#expectSync !== null) {
      if ((value as { return?: unknown } | null)?.return === this.#expectSync) {
        this.#waiter = null;
        waiter.resolve(this.#expectSync);
      }
      return;
    }
    if (typeof value !== 'object' || value === null) {
      this.#fail(new TernError('guest_error', 'guest agent sent a reply that is not an object'));
      return;
    }
    const v = value as { return?: unknown; error?: { class?: unknown; desc?: unknown } };
    this.#waiter = null;
    if ('return' in v) waiter.resolve(v.return);
    else if (v.error) {
      const errorClass = typeof v.error.class === 'string' ? v.error.class.slice(0, 100) : 'unknown';
      waiter.reject(replyError(guestMessage(v.error.desc) ?? 'unknown error', errorClass));
    } else {
      this.#synced = false;
      waiter.reject(new TernError('guest_error', 'guest agent sent a reply without return or error'));
    }
  }

  #fail(err: TernError): void {
    this.#onProblem(err.message);
    this.#synced = false;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(err);
  }
}
