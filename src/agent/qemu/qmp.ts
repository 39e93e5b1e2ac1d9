/**
 * A small typed client for the QEMU Machine Protocol over a unix socket: greeting,
 * capability negotiation, commands with ids and timeouts, events, and disconnect handling.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { TernError } from '../../errors.ts';
import { JsonLineReader } from '../../http/json-lines.ts';

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  command: string;
}

const maxReply = 16 * 1024 * 1024;

export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  #socket: net.Socket;
  #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;
  version = '';

  private constructor(socket: net.Socket) {
    super();
    this.#socket = socket;
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const socket = net.createConnection(path);
    const client = new QmpClient(socket);
    socket.setEncoding('utf8');
    const greeting = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new TernError('timeout', `QMP greeting not received on ${path} within ${timeoutMs} ms`));
        socket.destroy();
      }, timeoutMs);
      let greeted = false;
      const reader = new JsonLineReader(
        maxReply,
        (msg) => {
          if (!greeted) {
            greeted = true;
            clearTimeout(timer);
            const qmp = (
              msg as { QMP?: { version?: { qemu?: { major: number; minor: number; micro: number } } } }
            ).QMP;
            if (!qmp) {
              reject(new TernError('protocol_error', 'QMP peer did not send a greeting'));
              socket.destroy();
              return;
            }
            const v = qmp.version?.qemu;
            client.version = v ? `${v.major}.${v.minor}.${v.micro}` : 'unknown';
            resolve();
            return;
          }
          client.#dispatch(msg);
        },
        () => client.#close(),
      );
      socket.on('data', (chunk: string) => reader.push(chunk));
      socket.on('error', (err) => {
        clearTimeout(timer);
        reject(new TernError('hypervisor_error', `cannot connect to QMP at ${path}: ${err.message}`));
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (!greeted) reject(new TernError('hypervisor_error', `QMP at ${path} closed before its greeting`));
        client.#close();
      });
    });
    await greeting;
    try {
      await client.execute('qmp_capabilities', undefined, timeoutMs);
    } catch (err) {
      // Do not leave a half-open monitor connection behind: QEMU serves one client at a time.
      client.close();
      throw err;
    }
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    if (this.#closed)
      return Promise.reject(new TernError('hypervisor_error', `QMP connection closed (${command})`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new TernError('timeout', `QMP command ${command} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer, command });
      this.#socket.write(
        `${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`,
      );
    });
  }

  /** Resolves with the first event of that name satisfying the filter, or rejects after the timeout. */
  waitForEvent(
    name: string,
    timeoutMs: number,
    filter: (e: QmpEvent) => boolean = () => true,
  ): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name || !filter(e)) return;
        cleanup();
        resolve(e);
      };
      const onClose = () => {
        cleanup();
        reject(new TernError('hypervisor_error', `QMP closed while waiting for ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new TernError('timeout', `no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  close(): void {
    this.#socket.destroy();
    this.#close();
  }

  #dispatch(msg: unknown): void {
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as {
      id?: unknown;
      return?: unknown;
      error?: { class?: string; desc?: string };
      event?: unknown;
    };
    if (typeof m.event === 'string') {
      this.emit('event', msg as QmpEvent);
      return;
    }
    if (typeof m.id !== 'number') return;
    const pending = this.#pending.get(m.id);
    if (!pending) return;
    this.#pending.delete(m.id);
    clearTimeout(pending.timer);
    if (m.error) {
      pending.reject(
        new TernError(
          'hypervisor_error',
          `QEMU refused ${pending.command}: ${m.error.desc ?? m.error.class}`,
          {
            qmpClass: m.error.class,
          },
        ),
      );
    } else {
      pending.resolve(m.return);
    }
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new TernError('hypervisor_error', `QMP connection closed during ${p.command}`));
    }
    this.#pending.clear();
    this.emit('close');
  }
}
