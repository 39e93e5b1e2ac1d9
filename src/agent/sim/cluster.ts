/**
 * Simulated hosts in one process: N real agents (protocol server, storage, TLS) over the `sim`
 * driver, each with its own state directory and local pool under a base directory, and a
 * shared pool all of them see. Each agent is reached through a relay that the host's
 * reachability faults (and its power) cut, so a manager sees a host vanish from the network as
 * it would a real one. How hosts join a manager is the caller's business: `join` gives the
 * join parameters of a host's first start.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { type JoinParams, loadMembership } from '../enrol.ts';
import { type AgentOptions, type RunningAgent, startAgent } from '../start.ts';
import { type SimClock, SimDriver, type SimDriverOptions } from './driver.ts';

export type SimHostDriverOptions = Partial<
  Omit<SimDriverOptions, 'hostname' | 'pools' | 'sharedPools' | 'clock'>
>;

export interface SimHostsOptions {
  baseDir: string;
  log: Logger;
  /** Address agents (and their relays) listen on; 127.0.0.1 by default. */
  listenHost?: string;
  /** Host names; `sim-001`, `sim-002`, … by default. */
  name?: (index: number) => string;
  /** Every host gets the pool `shared` at `<baseDir>/shared` (default true). */
  sharedPool?: boolean;
  /** Options of every host's driver, or per host. */
  driver?: SimHostDriverOptions | ((name: string, index: number) => SimHostDriverOptions);
  /** One simulated clock for all hosts (migrations between them run on it). */
  clock?: SimClock;
  /** Join parameters of a host that has not joined yet (its first start). */
  join?: (name: string) => Promise<JoinParams>;
  /** Other agent options (heartbeat period, …). */
  agent?: Partial<
    Omit<AgentOptions, 'driver' | 'stateDir' | 'pools' | 'sharedPools' | 'host' | 'port' | 'log'>
  >;
  /** Hosts started at a time (default 4). */
  concurrency?: number;
}

export interface SimHost {
  name: string;
  /** How managers reach the agent (through its relay). */
  url: string;
  driver: SimDriver;
  stateDir: string;
  pools: Record<string, string>;
  close(): Promise<void>;
}

export interface SimHosts {
  hosts: SimHost[];
  host(name: string): SimHost;
  close(): Promise<void>;
}

export async function startSimHosts(n: number, opts: SimHostsOptions): Promise<SimHosts> {
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const width = Math.max(3, String(n).length);
  const nameOf = opts.name ?? ((i: number) => `sim-${String(i + 1).padStart(width, '0')}`);
  const shared = opts.sharedPool === false ? null : path.join(opts.baseDir, 'shared');
  if (shared) fs.mkdirSync(shared, { recursive: true });
  const hosts: SimHost[] = new Array(n);
  const closeAll = async () => {
    // Relays first: their connections end, so no agent waits on an open event stream.
    await Promise.all(hosts.filter(Boolean).map((h) => h.close()));
  };

  const startOne = async (i: number): Promise<void> => {
    const name = nameOf(i);
    const dir = path.join(opts.baseDir, name);
    const stateDir = path.join(dir, 'agent');
    const pools: Record<string, string> = { local: path.join(dir, 'pool') };
    if (shared) pools.shared = shared;
    const perHost = typeof opts.driver === 'function' ? opts.driver(name, i) : (opts.driver ?? {});
    const driver = new SimDriver({
      hostname: name,
      pools,
      sharedPools: shared ? ['shared'] : [],
      clock: opts.clock,
      log: opts.log,
      ...perHost,
    });
    // The address the manager knows stays the same across restarts on the same base directory.
    const portFile = path.join(dir, 'relay-port');
    const known = fs.existsSync(portFile) ? Number(fs.readFileSync(portFile, 'utf8')) : 0;
    const relay = await Relay.start(listenHost, known).catch(() => Relay.start(listenHost, 0));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(portFile, String(relay.port));
    const url = `https://${listenHost}:${relay.port}`;
    const onReachable = (up: boolean) => (up ? relay.mend() : relay.cut());
    driver.faults.reachability.on('reachable', onReachable);
    let agent: RunningAgent | undefined;
    try {
      const join = !loadMembership(stateDir) && opts.join ? await opts.join(name) : undefined;
      // The agent's own port is behind the relay, so another one can be tried when a free
      // port was taken before the agent got to listen on it.
      for (let attempt = 1; !agent; attempt++) {
        const port = await freePort(listenHost);
        relay.target = { host: listenHost, port };
        try {
          agent = await startAgent({
            ...opts.agent,
            driver,
            stateDir,
            pools,
            sharedPools: shared ? ['shared'] : [],
            host: listenHost,
            port,
            advertise: url,
            // Only the first attempt joins: the membership is kept by then.
            join: attempt === 1 ? join : undefined,
            log: opts.log,
          });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
        }
      }
    } catch (err) {
      driver.faults.reachability.off('reachable', onReachable);
      await relay.close();
      throw err;
    }
    const running = agent;
    hosts[i] = {
      name,
      url,
      driver,
      stateDir,
      pools,
      async close() {
        driver.faults.reachability.off('reachable', onReachable);
        await relay.close();
        await running.close();
      },
    };
  };

  let next = 0;
  let failed: unknown = null;
  const worker = async () => {
    while (next < n && !failed) {
      await startOne(next++).catch((err) => {
        failed ??= err;
      });
    }
  };
  // Every worker ends before anything is closed: no host may start after the cleanup.
  await Promise.all(Array.from({ length: Math.min(n, opts.concurrency ?? 4) }, worker));
  if (failed) {
    await closeAll();
    throw failed;
  }
  const byName = new Map(hosts.map((h) => [h.name, h]));
  return {
    hosts,
    host(name) {
      const h = byName.get(name);
      if (!h) throw new Error(`no simulated host ${name}`);
      return h;
    },
    close: closeAll,
  };
}

/**
 * A TCP relay to an agent: the host's network cable. Cut, it drops every connection and
 * resets new ones, as a host that vanished from the network; mended, it carries them again.
 */
class Relay {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** The agent's own address. */
  target: { host: string; port: number } | null = null;
  #open = true;

  private constructor(server: net.Server) {
    this.#server = server;
    server.on('connection', (s) => this.#connect(s));
  }

  static async start(host: string, port: number): Promise<Relay> {
    const server = net.createServer();
    const relay = new Relay(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return relay;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  #connect(client: net.Socket): void {
    if (!this.#open || !this.target) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.target);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      this.#sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        this.#sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  }

  cut(): void {
    this.#open = false;
    for (const s of this.#sockets) s.resetAndDestroy();
    this.#sockets.clear();
  }

  mend(): void {
    this.#open = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}
