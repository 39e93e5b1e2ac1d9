/**
 * Runs real Tern processes for integration tests: agents and managers as separate processes
 * (so either can be killed, frozen or restarted on its own), on free loopback ports, with
 * state in a fresh temporary directory. Waits are on events and log lines, always bounded.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../src/cli/client.ts';
import { waitForTask } from '../src/cli/progress.ts';
import { TernError } from '../src/errors.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';

export const repoRoot = path.resolve(import.meta.dirname, '..');

export function tempDir(prefix: string): string {
  // Short paths: unix sockets of VMs live below it.
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/** Distinct free loopback ports: all are held open until every one is chosen. */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const srv = net.createServer();
          srv.once('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

let cachedGuest: string | undefined;
/** The tiny guest, built (or found in the cache) by guest/build.sh. */
export function guestDir(): string {
  cachedGuest ??= execFileSync('bash', [path.join(repoRoot, 'guest', 'build.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
    .trim()
    .split('\n')
    .pop()!;
  return cachedGuest;
}

/** A Tern process whose stderr is kept in a log file and watched for a readiness line. */
export class TernProcess {
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<number | null>;

  constructor(script: string, args: string[], logFile: string) {
    this.logFile = logFile;
    this.child = spawn(process.execPath, [path.join(repoRoot, script), ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, TERN_LOG_LEVEL: 'debug' },
    });
    const log = fs.createWriteStream(logFile, { flags: 'a' });
    this.child.stderr!.pipe(log);
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Resolves when a stderr line contains `text`; rejects if the process exits first. */
  waitForLine(text: string, timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen = (seen + chunk.toString()).slice(-65536);
        if (seen.includes(text)) finish(() => resolve());
      };
      const onExit = (code: number | null) =>
        finish(() => reject(new Error(`process exited (${code}) before "${text}"; see ${this.logFile}`)));
      const timer = setTimeout(
        () => finish(() => reject(new Error(`no "${text}" within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        this.child.stderr!.off('data', onData);
        this.child.off('exit', onExit);
        fn();
      };
      this.child.stderr!.on('data', onData);
      this.child.once('exit', onExit);
    });
  }

  signal(sig: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(sig);
  }

  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }
}

export interface Cluster {
  dir: string;
  pool: string;
  agentPort: number;
  managerPort: number;
  agentToken: string;
  agent: TernProcess;
  manager: TernProcess;
  api: TestApi;
  startAgent(): Promise<TernProcess>;
  startManager(): Promise<TernProcess>;
  stop(): Promise<void>;
}

/** One host agent and one manager, each its own process, as a real deployment has them. */
export async function startCluster(
  name: string,
  opts: { dir?: string; pools?: Record<string, string> } = {},
): Promise<Cluster> {
  const dir = opts.dir ?? tempDir(`tern-${name}`);
  const [agentPort, managerPort] = await freePorts(2);
  const agentToken = randomBytes(24).toString('base64url');
  fs.writeFileSync(path.join(dir, 'agent.token'), agentToken, { mode: 0o600 });
  const pool = path.join(dir, 'pool');
  const guest = guestDir();
  const c = { dir, pool, agentPort, managerPort, agentToken } as Cluster;
  c.startAgent = async () => {
    const p = new TernProcess(
      'src/agent/main.ts',
      [
        '--state-dir',
        path.join(dir, 'agent'),
        '--port',
        String(agentPort),
        '--token-file',
        path.join(dir, 'agent.token'),
        '--pool',
        `local=${pool}`,
        ...Object.entries(opts.pools ?? {}).flatMap(([n, d]) => ['--pool', `${n}=${d}`]),
      ],
      path.join(dir, 'agent.log'),
    );
    await p.waitForLine('agent listening');
    c.agent = p;
    return p;
  };
  c.startManager = async () => {
    const p = new TernProcess(
      'src/manager/main.ts',
      [
        '--database',
        path.join(dir, 'tern.db'),
        '--port',
        String(managerPort),
        '--agent',
        `local=http://127.0.0.1:${agentPort}`,
        '--agent-token-file',
        path.join(dir, 'agent.token'),
        '--admin-token-file',
        path.join(dir, 'admin.token'),
        '--guest-dir',
        guest,
      ],
      path.join(dir, 'manager.log'),
    );
    await p.waitForLine('manager listening');
    c.manager = p;
    return p;
  };
  c.stop = async () => {
    const vms = await c.api
      ?.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000')
      .catch(() => ({ items: [] }));
    await c.manager?.kill();
    await c.agent?.kill();
    for (const vm of vms?.items ?? []) for (const pid of qemuPids(vm.id)) process.kill(pid, 'SIGKILL');
  };
  try {
    await c.startAgent();
    await c.startManager();
    const tokenFile = path.join(dir, 'admin.token');
    await waitForFile(tokenFile, 30_000);
    c.api = new TestApi(`http://127.0.0.1:${managerPort}`, fs.readFileSync(tokenFile, 'utf8').trim());
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
}

/** The admin token file appears after host registration; watch the directory for it. */
async function waitForFile(file: string, timeoutMs: number): Promise<void> {
  if (fs.existsSync(file)) return;
  await new Promise<void>((resolve, reject) => {
    const watcher = fs.watch(path.dirname(file), () => {
      if (fs.existsSync(file)) done(resolve);
    });
    const timer = setTimeout(() => done(() => reject(new Error(`${file} did not appear`))), timeoutMs);
    const done = (fn: () => void) => {
      clearTimeout(timer);
      watcher.close();
      fn();
    };
    if (fs.existsSync(file)) done(resolve);
  });
}

/** QEMU processes of a VM, found by the VM id on their command line. */
export function qemuPids(vmId: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.startsWith('qemu-system') && cmd.includes(vmId)) pids.push(Number(entry));
    } catch {
      // The process ended while we looked.
    }
  }
  return pids;
}

export class TestApi extends ApiClient {
  readonly token: string;

  constructor(url: string, token: string) {
    super(url, token);
    this.token = token;
  }

  /** Submits an asynchronous operation and waits for its task to end, whatever the outcome. */
  async task(method: string, path: string, body?: unknown): Promise<Task> {
    const r = await this.request<{ task: Task }>(method, path, body);
    return this.settle(r.task);
  }

  async settle(task: Task): Promise<Task> {
    try {
      await waitForTask(this, task, true);
    } catch (err) {
      if (!(err instanceof TernError)) throw err;
    }
    return this.request<Task>('GET', `/api/v1/tasks/${task.id}`);
  }

  /** Waits on the event stream until the VM satisfies `until`. */
  async waitVm(ref: string, until: (vm: Vm) => boolean, timeoutMs: number, what: string): Promise<Vm> {
    const first = await this.request<Vm>('GET', `/api/v1/vms/${ref}`);
    if (until(first)) return first;
    const stop = new AbortController();
    try {
      return await new Promise<Vm>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`VM ${ref}: not ${what} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        stop.signal.addEventListener('abort', () => clearTimeout(timer));
        const check = (vm: Vm) => {
          if (until(vm)) resolve(vm);
        };
        this.events(`vm=${first.id}`, (e: ManagerEvent) => e.type === 'vm' && check(e.vm), stop.signal).catch(
          (err) => {
            if (!stop.signal.aborted) reject(err);
          },
        );
        // Anything that changed before the stream connected.
        this.request<Vm>('GET', `/api/v1/vms/${ref}`).then(check, reject);
      });
    } finally {
      stop.abort();
    }
  }

  /** A raw request, for tests of how the API treats bad input. */
  async raw(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) {
    const res = await fetch(`${this.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, ...init.headers },
      body: init.body,
    });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, body: json as { error?: { code: string; message: string } } };
  }
}
