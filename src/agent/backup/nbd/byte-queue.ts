/**
 * A socket's incoming bytes, taken in exact amounts: `take(n)` resolves once n bytes arrived.
 * The caller decides n only after checking the header that announced it, so nothing a server
 * claims makes us wait for, or buffer, more than we agreed to. The socket is paused while the
 * buffered bytes exceed what the pending read needs, so a server that floods is held back by TCP.
 */
import type { Socket } from 'node:net';

export class ByteQueue {
  readonly #socket: Socket;
  readonly #chunks: Buffer[] = [];
  #buffered = 0;
  #want = 0;
  #waiter: { resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  #ended: Error | null = null;
  /** Read-ahead allowed beyond a pending read before the socket is paused. */
  readonly #highWater: number;

  constructor(socket: Socket, highWater = 4 * 1024 * 1024) {
    this.#socket = socket;
    this.#highWater = highWater;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      if (this.#buffered > this.#want + this.#highWater) socket.pause();
      this.#deliver();
    });
    socket.on('end', () => this.fail(new Error('the server closed the connection')));
    socket.on('close', () => this.fail(new Error('the connection closed')));
    socket.on('error', (err) => this.fail(err));
  }

  /** Ends the queue: a pending and every later `take` reject with `err` (the first one given). */
  fail(err: Error): void {
    this.#ended ??= err;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.reject(this.#ended);
  }

  take(n: number): Promise<Buffer> {
    if (this.#waiter) return Promise.reject(new Error('one read at a time'));
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
      this.#want = n;
      this.#deliver();
      if (this.#waiter && this.#ended) this.fail(this.#ended);
      else if (this.#waiter) this.#socket.resume();
    });
  }

  #deliver(): void {
    if (!this.#waiter || this.#buffered < this.#want) return;
    const n = this.#want;
    let out: Buffer;
    if (this.#chunks[0]!.length >= n) {
      const first = this.#chunks[0]!;
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const first = this.#chunks[0]!;
        const take = Math.min(first.length, n - filled);
        first.copy(out, filled, 0, take);
        filled += take;
        if (take === first.length) this.#chunks.shift();
        else this.#chunks[0] = first.subarray(take);
      }
    }
    this.#buffered -= n;
    this.#want = 0;
    const waiter = this.#waiter;
    this.#waiter = null;
    if (this.#buffered <= this.#highWater) this.#socket.resume();
    waiter.resolve(out);
  }
}
