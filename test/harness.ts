/**
 * Runs real Tern processes for integration tests: agents and managers as separate processes
 * (so either can be killed, frozen or restarted on its own), on free loopback ports, with
 * state in a fresh temporary directory. Waits are on events and log lines, always bounded.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../src/cli/client.ts';
import { waitForTask } from '../src/cli/progress.ts';
import { TernError } from '../src/errors.ts';
import { AgentClient } from '../src/manager/hosts/agent-client.ts';
import { tlsFetch } from '../src/pki/identity.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { Host, JoinToken } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Isolation, isolateHost } from './isolation.ts';

export const repoRoot = path.resolve(import.meta.dirname, '..');

/** What a run of the tern CLI printed and how it exited. */
export interface TernRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** This process's environment without its TERN_ variables (but TERN_GUEST_DIR), then `env`. */
export function ternEnv(env: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...process.env };
  for (const k of Object.keys(out)) if (k.startsWith('TERN_') && k !== 'TERN_GUEST_DIR') delete out[k];
  return Object.assign(out, env);
}

/**
 * Runs bin/tern as a user would: without this process's TERN_ variables (but TERN_GUEST_DIR,
 * the tests' guest), with `env` saying which manager, CA, token or config it uses (a TestApi's
 * `cliEnv` for its manager), and `input` (or nothing) on its stdin. Asynchronous, as a manager
 * may run in this process and must keep answering. `pipe` sends stdout through a real pipe, as
 * `tern … | cat` in a script does: Node's own child stdio is a socket, which takes what a pipe
 * would not.
 */
export function runTern(
  args: string[],
  opts: { env?: Record<string, string | undefined>; input?: string; pipe?: boolean } = {},
): Promise<TernRun> {
  const env = ternEnv(opts.env);
  const bin = path.join(repoRoot, 'bin', 'tern');
  const child = opts.pipe
    ? spawn('bash', ['-o', 'pipefail', '-c', '"$0" "$@" | cat', bin, ...args], { env })
    : spawn(bin, args, { env });
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

export function tempDir(prefix: string): string {
  // Short paths: unix sockets of VMs live below it.
  return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/**
 * Distinct free loopback ports, all held open until every one is chosen. They lie below the
 * kernel's ephemeral range (32768 and up): a process restarted on its port (a test that kills
 * and restarts a manager) must not find it taken meanwhile by some outgoing connection.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = new Map<number, net.Server>();
  while (servers.size < n) {
    const port = 10_000 + Math.floor(Math.random() * 22_000);
    if (servers.has(port)) continue;
    const srv = await new Promise<net.Server | null>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(null));
      s.listen(port, '127.0.0.1', () => resolve(s));
    });
    if (srv) servers.set(port, srv);
  }
  await Promise.all([...servers.values()].map((s) => new Promise((r) => s.close(r))));
  return [...servers.keys()];
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

/** The cloud guest as guest/cloud/build.sh describes it in its manifest.json. */
export interface CloudGuest {
  dir: string;
  /** Absolute path of the self-booting qcow2 disk image (BIOS and UEFI). */
  disk: string;
  manifest: { key: string; virtual_size: number; os: { kernel_release: string }; [k: string]: unknown };
}

let cachedCloudGuest: CloudGuest | undefined;
/** The Debian cloud guest, built (or found in the cache) by guest/cloud/build.sh. */
export function cloudGuest(): CloudGuest {
  if (!cachedCloudGuest) {
    const dir = execFileSync('bash', [path.join(repoRoot, 'guest', 'cloud', 'build.sh')], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    })
      .trim()
      .split('\n')
      .pop()!;
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
    cachedCloudGuest = { dir, disk: path.join(dir, manifest.disk), manifest };
  }
  return cachedCloudGuest;
}

/** A Tern process whose stderr is kept in a log file and watched for a readiness line. */
export class TernProcess {
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<number | null>;

  /** `wrap` runs the command line elsewhere, e.g. on an isolated host. */
  constructor(script: string, args: string[], logFile: string, wrap = (argv: string[]) => argv) {
    this.logFile = logFile;
    const [cmd, ...argv] = wrap([process.execPath, path.join(repoRoot, script), ...args]);
    this.child = spawn(cmd, argv, {
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

/** A host of a test cluster: an agent process with its own state directory and local pool. */
export interface TestHost {
  name: string;
  port: number;
  stateDir: string;
  /** Its local pool (named `local`). */
  pool: string;
  agent: TernProcess;
  /** With `isolated`: its own network and storage path, which faults can cut. */
  isolation: Isolation | null;
  /** Starts (or restarts) the agent; the first start joins the cluster. */
  start(): Promise<TernProcess>;
}

export interface Cluster {
  dir: string;
  /** The first host's local pool, port and agent. */
  pool: string;
  agentPort: number;
  agent: TernProcess;
  managerPort: number;
  clusterPort: number;
  /** The manager's cluster endpoint, where agents join. */
  clusterUrl: string;
  /** A directory every host has as the shared pool `shared` (with `shared: true`). */
  sharedPool: string | null;
  hosts: TestHost[];
  manager: TernProcess;
  api: TestApi;
  startAgent(): Promise<TernProcess>;
  startManager(): Promise<TernProcess>;
  /** Joins one more host (a new agent process) to the cluster. */
  addHost(name: string): Promise<TestHost>;
  /** The manager's own mutual-TLS client to a host's agent (for benchmarks and checks). */
  agentClient(host?: string): Promise<AgentClient>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  dir?: string;
  /** Extra pools of the first host. */
  pools?: Record<string, string>;
  /** Host names (default: one host, `local`). */
  hosts?: string[];
  /** Give every host the shared pool `shared` (and put the tiny template there). */
  shared?: boolean;
  /** Run every host in its own network namespace, with its own path to the shared pool. */
  isolated?: boolean;
  /** Directories every host may import images from by path (default: each host's own). */
  importDirs?: string[];
}

/**
 * A manager process whose database, key file, admin token and log are in `dir`, on the given
 * API and cluster ports; `extra` adds its own flags (the guest to import, a listen address).
 */
export function managerProcess(
  dir: string,
  port: number,
  clusterPort: number,
  extra: string[] = [],
): TernProcess {
  return new TernProcess(
    'src/manager/main.ts',
    [
      '--database',
      path.join(dir, 'tern.db'),
      '--port',
      String(port),
      '--cluster-port',
      String(clusterPort),
      '--admin-token-file',
      path.join(dir, 'admin.token'),
      '--key-file',
      path.join(dir, 'keys', 'kek.json'),
      ...extra,
    ],
    path.join(dir, 'manager.log'),
  );
}

/** A manager and its hosts, each its own process, joined over mutual TLS as a real deployment is. */
export async function startCluster(name: string, opts: ClusterOptions = {}): Promise<Cluster> {
  const dir = opts.dir ?? tempDir(`tern-${name}`);
  const names = opts.hosts ?? ['local'];
  const [managerPort, clusterPort, ...agentPorts] = await freePorts(2 + names.length + 4);
  const sharedPool = opts.shared ? path.join(dir, 'shared') : null;
  const guest = guestDir();
  const clusterUrl = `https://127.0.0.1:${clusterPort}`;
  const c = { dir, managerPort, clusterPort, clusterUrl, sharedPool, hosts: [] as TestHost[] } as Cluster;
  let joinedFirst = false;
  let templateReady: Promise<void> | null = null;
  if (sharedPool) fs.mkdirSync(sharedPool, { recursive: true });
  const makeHost = (hostName: string, port: number, extraPools: Record<string, string>): TestHost => {
    const stateDir = path.join(dir, `agent-${hostName}`);
    const isolation = opts.isolated ? isolateHost(c.hosts.length, sharedPool) : null;
    const address = isolation?.hostAddress ?? '127.0.0.1';
    const h: TestHost = {
      name: hostName,
      port,
      stateDir,
      pool: path.join(dir, `pool-${hostName}`),
      agent: undefined as unknown as TernProcess,
      isolation,
      async start() {
        let join: string[] = [];
        if (!fs.existsSync(path.join(stateDir, 'pki', 'cert.pem'))) {
          const t = await c.api.request<JoinToken>('POST', '/api/v1/hosts', { name: hostName });
          join = [
            '--join',
            `https://${isolation?.managerAddress ?? '127.0.0.1'}:${clusterPort}`,
            '--join-token',
            t.token,
            '--ca-fingerprint',
            t.caFingerprint,
          ];
        }
        const p = new TernProcess(
          'src/agent/main.ts',
          [
            '--state-dir',
            stateDir,
            '--port',
            String(port),
            ...(isolation ? ['--host', address, '--advertise', `https://${address}:${port}`] : []),
            '--pool',
            `local=${h.pool}`,
            ...Object.entries(extraPools).flatMap(([n, d]) => ['--pool', `${n}=${d}`]),
            ...(sharedPool ? ['--shared-pool', `shared=${sharedPool}`] : []),
            ...(opts.importDirs ?? []).flatMap((d) => ['--import-dir', d]),
            ...join,
          ],
          path.join(dir, `agent-${hostName}.log`),
          isolation?.wrap,
        );
        await p.waitForLine('agent listening');
        h.agent = p;
        return p;
      },
    };
    return h;
  };
  c.startAgent = async () => {
    const p = await c.hosts[0].start();
    c.agent = p;
    return p;
  };
  c.addHost = async (hostName) => {
    const h = makeHost(hostName, agentPorts[c.hosts.length], {});
    c.hosts.push(h);
    await h.start();
    await c.api.waitHost(hostName, (x) => x.state === 'online' && x.facts !== null, 60_000, 'online');
    return h;
  };
  c.startManager = async () => {
    const p = managerProcess(dir, managerPort, clusterPort, [
      '--guest-dir',
      guest,
      '--guest-pool',
      sharedPool ? 'shared' : 'local',
      ...(opts.isolated ? ['--cluster-host', '0.0.0.0'] : []),
    ]);
    // The first start imports the tiny template once the first host is online.
    templateReady = joinedFirst ? null : p.waitForLine('tiny template ready', 120_000);
    templateReady?.catch(() => {});
    await p.waitForLine('manager listening');
    c.manager = p;
    return p;
  };
  c.agentClient = async (hostName) => {
    const host = await c.api.request<Host>('GET', `/api/v1/hosts/${hostName ?? c.hosts[0].name}`);
    const pki = path.join(dir, 'pki');
    const identity = {
      key: fs.readFileSync(path.join(pki, 'manager.key'), 'utf8'),
      cert: fs.readFileSync(path.join(pki, 'manager.crt'), 'utf8'),
      ca: fs.readFileSync(path.join(pki, 'ca.crt'), 'utf8'),
    };
    return new AgentClient(
      host.address,
      tlsFetch(identity, { pin: () => host.certificate?.fingerprint ?? null }),
    );
  };
  c.stop = async () => {
    const vms = await c.api
      ?.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000')
      .catch(() => ({ items: [] }));
    await c.manager?.kill();
    for (const h of c.hosts) await h.agent?.kill();
    for (const vm of vms?.items ?? []) for (const pid of qemuPids(vm.id)) process.kill(pid, 'SIGKILL');
    for (const h of c.hosts) h.isolation?.destroy();
  };
  try {
    await c.startManager();
    const tokenFile = path.join(dir, 'admin.token');
    await waitForFile(tokenFile, 30_000);
    c.api = new TestApi(
      `https://127.0.0.1:${managerPort}`,
      fs.readFileSync(tokenFile, 'utf8').trim(),
      path.join(dir, 'pki', 'ca.crt'),
    );
    for (const [i, hostName] of names.entries()) {
      const h = makeHost(hostName, agentPorts[i], i === 0 ? (opts.pools ?? {}) : {});
      c.hosts.push(h);
      await h.start();
    }
    for (const h of c.hosts)
      await c.api.waitHost(h.name, (x) => x.state === 'online' && x.facts !== null, 60_000, 'online');
    joinedFirst = true;
    c.agent = c.hosts[0].agent;
    c.agentPort = c.hosts[0].port;
    c.pool = c.hosts[0].pool;
    await templateReady;
  } catch (err) {
    await c.stop();
    throw err;
  }
  return c;
}

/** The admin token file appears once the manager has made it; watch the directory for it. */
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

/**
 * Waits, with a bound, until a VM has no QEMU process left. A guest that powered off is
 * `stopped` at once while its host is still ending the QEMU it left up (-no-shutdown), and a
 * process's end has no event to wait on from here, so /proc is looked at again until then.
 */
export async function qemuGone(vmId: string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (qemuPids(vmId).length > 0) {
    if (Date.now() > deadline)
      throw new Error(`QEMU of ${vmId} still runs after ${ms} ms: ${qemuPids(vmId)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export class TestApi extends ApiClient {
  readonly token: string;
  /** The CA the manager's certificate comes from, as a file (TERN_CA, curl --cacert). */
  readonly caFile: string;

  constructor(url: string, token: string, caFile: string) {
    super(url, token, fs.readFileSync(caFile, 'utf8'));
    this.token = token;
    this.caFile = caFile;
  }

  /** The environment that points the CLI at this manager as this caller. */
  get cliEnv(): { TERN_URL: string; TERN_TOKEN: string; TERN_CA: string } {
    return { TERN_URL: this.url, TERN_TOKEN: this.token, TERN_CA: this.caFile };
  }

  /** The same manager with another token (or none). */
  as(token: string): TestApi {
    return new TestApi(this.url, token, this.caFile);
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
    return this.waitOn(`VM ${ref}`, `vm=${first.id}`, (e) => (e.type === 'vm' ? e.vm : undefined), {
      read: () => this.request<Vm>('GET', `/api/v1/vms/${first.id}`),
      until,
      timeoutMs,
      what,
      seen: (v) => ({ state: v.state, host: v.host, guest: v.guest }),
    });
  }

  /** Waits on the event stream until the task satisfies `until`. */
  async waitTask(id: string, until: (t: Task) => boolean, timeoutMs: number, what: string): Promise<Task> {
    return this.waitOn(`task ${id}`, `task=${id}`, (e) => (e.type === 'task' ? e.task : undefined), {
      read: () => this.request<Task>('GET', `/api/v1/tasks/${id}`),
      until,
      timeoutMs,
      what,
      seen: (t) => ({ state: t.state, error: t.error }),
    });
  }

  /**
   * Waits on the event stream until a task on `object` (`replication:<id>`…) satisfies `until`;
   * `read` gives the latest such task each time the stream opens.
   */
  async waitTaskOn(
    object: string,
    read: () => Promise<Task>,
    until: (t: Task) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<Task> {
    return this.waitOn(
      object,
      '',
      (e) => (e.type === 'task' && e.task.objects.includes(object) ? e.task : undefined),
      { read, until, timeoutMs, what, seen: (t) => ({ id: t.id, kind: t.kind, state: t.state }) },
    );
  }

  /** Waits on the event stream until the host satisfies `until`. */
  async waitHost(name: string, until: (h: Host) => boolean, timeoutMs: number, what: string): Promise<Host> {
    return this.waitOn(
      `host ${name}`,
      '',
      (e) => (e.type === 'host' && e.host.name === name ? e.host : undefined),
      {
        read: () => this.request<Host>('GET', `/api/v1/hosts/${name}`),
        until,
        timeoutMs,
        what,
        seen: (h) => ({ state: h.state, lastSeen: h.lastSeen }),
      },
    );
  }

  /**
   * Follows the event stream until an object satisfies `until`, within `timeoutMs`. The object is
   * read again each time the stream opens (what changed before is not missed) and the stream is
   * followed again when it ends (a restarted manager); a timeout names what was last seen.
   */
  private async waitOn<T>(
    who: string,
    query: string,
    pick: (e: ManagerEvent) => T | undefined,
    o: {
      read: () => Promise<T>;
      until: (x: T) => boolean;
      timeoutMs: number;
      what: string;
      seen: (x: T) => unknown;
    },
  ): Promise<T> {
    const stop = new AbortController();
    let last: T | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          const seen = last === undefined ? 'nothing' : JSON.stringify(o.seen(last));
          reject(new Error(`${who}: not ${o.what} within ${o.timeoutMs} ms; last seen: ${seen}`));
        }, o.timeoutMs);
        stop.signal.addEventListener('abort', () => clearTimeout(timer));
        const check = (x: T) => {
          last = x;
          if (o.until(x)) resolve(x);
        };
        const follow = async () => {
          while (!stop.signal.aborted) {
            try {
              await this.events(
                query,
                (e) => {
                  const x = pick(e);
                  if (x !== undefined) check(x);
                },
                stop.signal,
                () => void o.read().then(check, () => {}),
              );
            } catch (err) {
              if (stop.signal.aborted) return;
              if (!(err instanceof TernError && err.code === 'unavailable')) return reject(err);
            }
            // The stream ended or the manager is away for a moment: follow it again shortly.
            await new Promise((r) => setTimeout(r, 200));
          }
        };
        void follow();
      });
    } finally {
      stop.abort();
    }
  }

  /** A raw request, for tests of how the API treats bad input. */
  async raw(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) {
    const res = await this.fetch(`${this.url}${path}`, {
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
    return {
      status: res.status,
      headers: res.headers,
      body: json as { error?: { code: string; message: string } },
    };
  }
}

/**
 * Runs a command in the guest's root shell on its serial console (on the host that runs it) and
 * resolves with the output once it matches `expect`. Expect upper case made by `tr`, so the
 * shell's echo of the command itself never matches.
 */
export function shellOn(
  host: TestHost,
  vmId: string,
  command: string,
  expect: RegExp,
  timeoutMs = 30_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path.join(host.stateDir, 'run', vmId, 'serial.sock'));
    let out = '';
    const finish = (err?: Error) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(out);
    };
    const timer = setTimeout(
      () =>
        finish(
          new Error(`the guest shell did not answer ${expect} within ${timeoutMs} ms: ${out.slice(-300)}`),
        ),
      timeoutMs,
    );
    sock.on('data', (d: Buffer) => {
      out += d.toString();
      if (expect.test(out)) finish();
    });
    sock.on('error', finish);
    sock.on('connect', () => sock.write(`${command}\n`));
  });
}
