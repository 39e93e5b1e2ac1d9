/**
 * A real manager in this process driving simulated hosts that join it like real ones, with a
 * small template disk on the shared pool every host sees (so a VM may go anywhere). For scale
 * and fault tests of the manager's own code.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { type SimHosts, type SimHostsOptions, startSimHosts } from '../src/agent/sim/cluster.ts';
import type { Logger } from '../src/log.ts';
import { issueAdminToken } from '../src/manager/auth/bootstrap.ts';
import { type RunningManager, startManager } from '../src/manager/start.ts';
import type { JoinToken } from '../src/wire/host.ts';
import { freePorts, managerProcess, type TernProcess, TestApi, tempDir } from './harness.ts';

export interface SimCluster {
  dir: string;
  manager: RunningManager;
  api: TestApi;
  sim: SimHosts;
  close(): Promise<void>;
}

// Agents log refused requests at warn and above whatever their parent's level: keep them out
// of the test output.
const silent: Logger = pino({ level: 'silent' }, pino.destination('/dev/null'));

/** A manager in this process, its database and key file in `dir`, on free loopback ports, silent. */
export function startQuietManager(dir: string): Promise<RunningManager> {
  return startManager({
    database: path.join(dir, 'tern.db'),
    keyStore: { kind: 'file', path: path.join(dir, 'keys', 'kek.json') },
    host: '127.0.0.1',
    port: 0,
    clusterPort: 0,
    log: silent,
  });
}

export async function startSimCluster(
  hosts: number,
  opts: Pick<SimHostsOptions, 'driver' | 'clock'> & {
    /** Where the manager keeps its database and keys (default: the cluster's directory). */
    managerDir?: string;
  } = {},
): Promise<SimCluster> {
  const dir = tempDir('tern-sim');
  const { managerDir, ...simOpts } = opts;
  const manager = await startQuietManager(managerDir ?? dir);
  const api = new TestApi(
    manager.url,
    await issueAdminToken(manager.services, 'admin'),
    path.join(managerDir ?? dir, 'pki', 'ca.crt'),
  );
  let sim: SimHosts | null = null;
  const close = async () => {
    await sim?.close();
    await manager.close();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  // A cluster that does not come up is closed here: the caller never gets it to close.
  try {
    sim = await startSimHosts(hosts, {
      baseDir: dir,
      log: silent,
      ...simOpts,
      join: async (name) => {
        const t = await api.request<JoinToken>('POST', '/api/v1/hosts', { name });
        return { manager: manager.clusterUrl, token: t.token, caFingerprint: t.caFingerprint };
      },
    });
    const disk = path.join(dir, 'shared', 'templates', 'sim', 'disk.qcow2');
    fs.mkdirSync(path.dirname(disk), { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
    await manager.services.templates.insert(
      {
        name: 'sim',
        description: 'an empty disk for simulated VMs',
        machine: 'q35',
        vcpus: 1,
        memoryMiB: 512,
        disk: { pool: 'shared', path: 'templates/sim/disk.qcow2' },
        diskSizeBytes: 64 * 1024 * 1024,
        boot: null,
        createdAt: new Date().toISOString(),
      },
      (await manager.services.hosts.get(sim.hosts[0].name)).id,
    );
    const deadline = Date.now() + 60_000;
    for (const h of sim.hosts) {
      await api.waitHost(
        h.name,
        (x) => x.state === 'online' && x.facts !== null,
        Math.max(1, deadline - Date.now()),
        'online with its facts',
      );
    }
  } catch (err) {
    await close();
    throw err;
  }
  return {
    dir,
    manager,
    api,
    sim,
    close,
  };
}

/**
 * Polls `probe` until it gives a value, with a bound: for answers the manager publishes no
 * event for (the HA watch's view, a host's state as a list shows it).
 */
export async function until<T>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<T | undefined>,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`not ${what} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * A real manager process (so a kill is a real SIGKILL) driving simulated hosts in this process
 * that joined it, for the tests that kill the manager mid-task and check what it finds after
 * its restart. Its database, keys and the hosts' files are in `dir`.
 */
export class KillableSimCluster {
  /** The manager process running now: `restartManager` replaces it. */
  manager: TernProcess;
  api!: TestApi;
  sim: SimHosts | null = null;
  readonly #dir: string;
  readonly #ports: [number, number];

  private constructor(dir: string, ports: [number, number]) {
    this.#dir = dir;
    this.#ports = ports;
    this.manager = managerProcess(dir, ports[0], ports[1]);
  }

  /** Starts the manager and `hosts` simulated hosts, and waits until every host is online. */
  static async start(dir: string, hosts: number, bootDelayMs: number): Promise<KillableSimCluster> {
    const c = new KillableSimCluster(dir, (await freePorts(2)) as [number, number]);
    try {
      await c.manager.waitForLine('manager listening');
      const tokenFile = path.join(dir, 'admin.token');
      await until('the admin token written', 30_000, async () => fs.existsSync(tokenFile) || undefined);
      const api = new TestApi(
        `https://127.0.0.1:${c.#ports[0]}`,
        fs.readFileSync(tokenFile, 'utf8').trim(),
        path.join(dir, 'pki', 'ca.crt'),
      );
      c.api = api;
      c.sim = await startSimHosts(hosts, {
        baseDir: dir,
        log: silent,
        driver: { cores: 16, memoryMiB: 32 * 1024, bootDelayMs },
        join: async (name) => {
          const t = await api.request<JoinToken>('POST', '/api/v1/hosts', { name });
          return {
            manager: `https://127.0.0.1:${c.#ports[1]}`,
            token: t.token,
            caFingerprint: t.caFingerprint,
          };
        },
      });
      await c.hostsOnline();
    } catch (err) {
      await c.close();
      throw err;
    }
    return c;
  }

  async hostsOnline(): Promise<void> {
    await Promise.all(
      (this.sim?.hosts ?? []).map((h) =>
        this.api.waitHost(h.name, (x) => x.state === 'online' && x.facts !== null, 60_000, 'online'),
      ),
    );
  }

  /** Starts the manager again (the test killed it) and waits until every host is online. */
  async restartManager(): Promise<void> {
    this.manager = managerProcess(this.#dir, this.#ports[0], this.#ports[1]);
    await this.manager.waitForLine('manager listening');
    await this.hostsOnline();
  }

  /** The hosts first, then the manager; the directory removed unless KEEP is set. */
  async close(): Promise<void> {
    await this.sim?.close();
    await this.manager.kill();
    if (!process.env.KEEP) fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}
