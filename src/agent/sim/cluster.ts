/**
 * Simulated hosts in one process: N real agents (protocol server, storage, TLS, HA guard) over
 * the `sim` driver, each with its own state directory and local pool under a base directory,
 * and a shared pool all of them see, each through its own mount point (`mount.ts`). A host's
 * network is two relays: one the manager reaches its agent through, one its agent reaches the
 * manager through (heartbeats); a reachability fault cuts both, so a manager sees a host vanish
 * from the network as it would a real one, and the host sees the manager vanish. A storage
 * fault cuts its mount. Power off stops its agent (no heartbeat, no lease), power on starts it
 * again on the same state directory, as a reboot. How hosts join a manager is the caller's
 * business: `join` gives the join parameters of a host's first start.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { type JoinParams, loadMembership } from '../enrol.ts';
import { freePort } from '../free-port.ts';
import { type AgentOptions, type RunningAgent, startAgent } from '../start.ts';
import type { SimClock } from './clock.ts';
import { SimDriver } from './driver.ts';
import { SharedMount } from './mount.ts';
import type { SimDriverOptions } from './options.ts';
import { addressOf, Relay } from './relay.ts';

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
  /** Whether its agent runs (it does not while the host is powered off). */
  readonly running: boolean;
  /** Resolves once the power changes asked so far have stopped or started the agent. */
  settled(): Promise<void>;
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
    const mount = shared ? new SharedMount(path.join(dir, 'mnt', 'shared'), shared) : null;
    const pools: Record<string, string> = { local: path.join(dir, 'pool') };
    if (mount) pools.shared = mount.path;
    const perHost = typeof opts.driver === 'function' ? opts.driver(name, i) : (opts.driver ?? {});
    const driver = new SimDriver({
      hostname: name,
      pools,
      sharedPools: mount ? ['shared'] : [],
      clock: opts.clock,
      log: opts.log,
      ...perHost,
    });
    // The address the manager knows stays the same across restarts on the same base directory.
    const portFile = path.join(dir, 'relay-port');
    const known = fs.existsSync(portFile) ? Number(fs.readFileSync(portFile, 'utf8')) : 0;
    const inbound = await Relay.start(listenHost, known).catch(() => Relay.start(listenHost, 0));
    const outbound = await Relay.start(listenHost, 0);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(portFile, String(inbound.port));
    const url = `https://${listenHost}:${inbound.port}`;
    const onReachable = (up: boolean) => {
      for (const r of [inbound, outbound]) up ? r.mend() : r.cut();
    };
    const onStorage = (up: boolean) => mount?.set(up);
    driver.faults.reachability.on('reachable', onReachable);
    driver.faults.storage.on('reachable', onStorage);
    const unhook = () => {
      driver.faults.reachability.off('reachable', onReachable);
      driver.faults.storage.off('reachable', onStorage);
    };

    let agent: RunningAgent | null = null;
    /** Starts the agent: the first start joins; a restart (power on) uses the kept membership. */
    const boot = async () => {
      const join = !loadMembership(stateDir) && opts.join ? await opts.join(name) : undefined;
      const manager = join?.manager ?? loadMembership(stateDir)?.manager;
      if (manager) outbound.target = addressOf(manager);
      // The agent's own port is behind the relay, so another one can be tried when a free
      // port was taken before the agent got to listen on it.
      for (let attempt = 1; !agent; attempt++) {
        const port = await freePort(listenHost);
        inbound.target = { host: listenHost, port };
        try {
          agent = await startAgent({
            ...opts.agent,
            driver,
            stateDir,
            pools,
            sharedPools: mount ? ['shared'] : [],
            host: listenHost,
            port,
            advertise: url,
            managerUrl: manager ? `https://${listenHost}:${outbound.port}` : undefined,
            // Only the first attempt joins: the membership is kept by then.
            join: attempt === 1 ? join : undefined,
            log: opts.log,
          });
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
        }
      }
    };
    const halt = async () => {
      const a = agent;
      agent = null;
      await a?.close();
    };
    try {
      await boot();
    } catch (err) {
      unhook();
      await Promise.all([inbound.close(), outbound.close()]);
      throw err;
    }
    // Power changes apply in order; a start that fails leaves the host down, and says so.
    let power: Promise<void> = Promise.resolve();
    const onPower = (on: boolean) => {
      power = power
        .then(() => (on ? boot() : halt()))
        .catch((err) => opts.log.error({ err, host: name }, 'simulated host: power change failed'));
    };
    driver.faults.power.on('power', onPower);
    hosts[i] = {
      name,
      url,
      driver,
      stateDir,
      pools,
      get running() {
        return agent !== null;
      },
      settled: () => power,
      async close() {
        unhook();
        driver.faults.power.off('power', onPower);
        await power;
        await Promise.all([inbound.close(), outbound.close()]);
        await halt();
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
