/**
 * The agent's link to the host's HA watchdog (watchdog-main.ts): a separate minimal process
 * that kills the protected VMs when the agent stops feeding it in time, as a hardware watchdog
 * resets a machine whose kernel hangs. It runs in its own session, so it outlives the agent;
 * one per state directory, found through `<state>/ha/watchdog.sock`, started on first use.
 *
 * Protocol: newline-delimited JSON over the unix socket. The agent sends
 * `{"timeoutMs":N,"vms":[{"id","pid"}]}` (a feed: act unless fed again within N ms) or
 * `{"disarm":true}`; the watchdog answers every line, and once on connecting, with its status.
 * Closing the connection does not disarm it: an agent that dies must still be fenced.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { TernError } from '../../errors.ts';

export interface WatchdogPaths {
  dir: string;
  socket: string;
  pidfile: string;
  log: string;
}

export function watchdogPaths(haDir: string): WatchdogPaths {
  return {
    dir: haDir,
    socket: path.join(haDir, 'watchdog.sock'),
    pidfile: path.join(haDir, 'watchdog.pid'),
    log: path.join(haDir, 'watchdog.log'),
  };
}

export interface ProtectedProcess {
  /** The VM id; the process's command line must contain it for the watchdog to kill it. */
  id: string;
  pid: number;
}

export interface WatchdogStatus {
  ok: boolean;
  error?: string;
  armed: boolean;
  /** Time left before it acts; null when disarmed. */
  remainingMs: number | null;
  /** How many times it has acted since it started. */
  fired: number;
}

/** One line of the protocol at most; a feed for thousands of VMs fits. */
export const maxLineBytes = 1024 * 1024;
const replyTimeoutMs = 5000;
const startTimeoutMs = 15_000;
const mainScript = path.join(import.meta.dirname, 'watchdog-main.ts');

export class WatchdogLink {
  readonly paths: WatchdogPaths;
  #idleExitMs: number | undefined;
  #sock: net.Socket | null = null;
  #buf = '';
  #waiting: Array<{ resolve: (s: WatchdogStatus) => void; reject: (e: Error) => void }> = [];
  #chain: Promise<unknown> = Promise.resolve();

  /** `idleExitMs`: how long a disarmed watchdog with no agent connected stays (its default 60 s). */
  constructor(haDir: string, opts: { idleExitMs?: number } = {}) {
    this.paths = watchdogPaths(haDir);
    this.#idleExitMs = opts.idleExitMs;
  }

  get connected(): boolean {
    return this.#sock !== null;
  }

  /**
   * Connects to the running watchdog and returns its status; when none answers, starts one
   * (`start`) or returns null.
   */
  connect(start?: true): Promise<WatchdogStatus>;
  connect(start: boolean): Promise<WatchdogStatus | null>;
  connect(start = true): Promise<WatchdogStatus | null> {
    return this.#serial(async () => {
      if (this.#sock) this.#drop(new Error('reconnecting'));
      let status = await this.#tryConnect();
      if (!status && !start) return null;
      if (!status) {
        await startWatchdog(this.paths, this.#idleExitMs);
        status = await this.#tryConnect();
      }
      if (!status)
        throw new TernError('unavailable', `the HA watchdog at ${this.paths.socket} does not answer`);
      return status;
    });
  }

  feed(timeoutMs: number, vms: ProtectedProcess[]): Promise<WatchdogStatus> {
    return this.#request({ timeoutMs: Math.max(1, Math.ceil(timeoutMs)), vms });
  }

  disarm(): Promise<WatchdogStatus> {
    return this.#request({ disarm: true });
  }

  /** Closes the connection; the watchdog keeps its state (and acts if it is armed). */
  close(): void {
    this.#drop(new Error('closed'));
  }

  #request(msg: unknown): Promise<WatchdogStatus> {
    return this.#serial(async () => {
      const sock = this.#sock;
      if (!sock) throw new TernError('unavailable', 'not connected to the HA watchdog');
      const reply = this.#nextReply();
      sock.write(`${JSON.stringify(msg)}\n`);
      const status = await reply;
      if (!status.ok) throw new TernError('invalid_request', `the HA watchdog refused: ${status.error}`);
      return status;
    });
  }

  /** One exchange at a time, so replies pair with requests even when a reply times out. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(fn, fn);
    this.#chain = run.catch(() => {});
    return run;
  }

  #nextReply(): Promise<WatchdogStatus> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        // A watchdog that does not answer is as good as none: drop it, reconnect later.
        this.#drop(new TernError('timeout', `the HA watchdog did not answer within ${replyTimeoutMs} ms`));
      }, replyTimeoutMs);
      this.#waiting.push({
        resolve: (s) => {
          clearTimeout(timer);
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  #tryConnect(): Promise<WatchdogStatus | null> {
    return new Promise((resolve) => {
      const sock = net.createConnection(this.paths.socket);
      const fail = () => {
        sock.destroy();
        resolve(null);
      };
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.off('error', fail);
        this.#sock = sock;
        this.#buf = '';
        sock.setEncoding('utf8');
        sock.on('data', (chunk: string) => this.#onData(chunk));
        // Only this connection's end drops the link: a newer one may have replaced it.
        sock.on('error', (err) => this.#sock === sock && this.#drop(err));
        sock.on(
          'close',
          () => this.#sock === sock && this.#drop(new Error('the HA watchdog closed the connection')),
        );
        this.#nextReply().then(resolve, () => resolve(null));
      });
    });
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    if (this.#buf.length > maxLineBytes) {
      this.#drop(new TernError('protocol_error', 'the HA watchdog sent an over-long line'));
      return;
    }
    for (let nl = this.#buf.indexOf('\n'); nl >= 0; nl = this.#buf.indexOf('\n')) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      let status: WatchdogStatus;
      try {
        status = JSON.parse(line) as WatchdogStatus;
      } catch {
        this.#drop(new TernError('protocol_error', 'the HA watchdog sent a non-JSON line'));
        return;
      }
      this.#waiting.shift()?.resolve(status);
    }
  }

  #drop(err: Error): void {
    const sock = this.#sock;
    this.#sock = null;
    sock?.destroy();
    for (const w of this.#waiting.splice(0)) w.reject(err);
  }
}

/**
 * Starts the watchdog detached (own session, its output in its log), and waits until it says
 * it listens, or that another one already does.
 */
export function startWatchdog(paths: WatchdogPaths, idleExitMs?: number): Promise<void> {
  fs.mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  const logFd = fs.openSync(paths.log, 'a', 0o600);
  const args = [
    mainScript,
    paths.dir,
    ...(idleExitMs === undefined ? [] : ['--idle-exit-ms', String(idleExitMs)]),
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', 'pipe', logFd] });
  fs.closeSync(logFd);
  child.unref();
  return new Promise((resolve, reject) => {
    let out = '';
    const finish = (err: Error | null) => {
      clearTimeout(timer);
      child.off('close', onExit);
      child.stdout!.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => {
      finish(
        new TernError(
          'unavailable',
          `the HA watchdog did not start within ${startTimeoutMs} ms; see ${paths.log}`,
        ),
      );
    }, startTimeoutMs);
    const onExit = (code: number | null) => {
      if (/^(ready|running)$/m.test(out)) return;
      finish(
        new TernError('unavailable', `the HA watchdog exited (${code}) while starting; see ${paths.log}`),
      );
    };
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      out += chunk;
      if (/^(ready|running)$/m.test(out)) finish(null);
    });
    // 'close', not 'exit': a watchdog that found another one running says so and exits at
    // once, and its last words must have been read by then.
    child.once('close', onExit);
    child.once('error', (err) =>
      finish(new TernError('unavailable', `cannot start the HA watchdog: ${err.message}`)),
    );
  });
}
