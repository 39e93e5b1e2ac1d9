/**
 * Networks realized in the host's kernel: a bridge per network (with a VXLAN device for an
 * overlay), its two nftables tables, its dnsmasq, and the VMs' ports. Every change goes through
 * one queue, so a port is never plugged into a network being rewritten.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { HostNetworkSpec, HostNetworkState, NetworkCapabilities } from '../../wire/network.ts';
import { ensureBridge, links, removeBridge } from './bridge.ts';
import { detectCapabilities } from './capabilities.ts';
import { dnsmasqPaths, dnsmasqPid, ensureDnsmasq, stopDnsmasq } from './dnsmasq.ts';
import { wantsDnsmasq } from './dnsmasq-config.ts';
import type { HostNetworks, PortSpec } from './host-networks.ts';
import { type HostShell, hostShell } from './host-shell.ts';
import { NetworkStore, type PortRecord } from './network-store.ts';
import { addPortRules, networkRules, removeNetworkRules, removePortRules } from './nft-rules.ts';
import { ensureVxlan, removeVxlans } from './overlay.ts';
import { hostProblem, specProblem } from './spec-checks.ts';
import {
  enslaveTap,
  ipBatch,
  linkGroup,
  makeTap,
  newTapName,
  removeTap,
  removeTaps,
  tapLines,
  tapUp,
} from './taps.ts';

export interface KernelNetworksOptions {
  stateDir: string;
  log: Logger;
  /** The network namespace standing in for the host (tests); undefined: the agent's own. */
  netns?: string;
  /** How often a dead dnsmasq is looked for (ms); 0: never. */
  watchMs?: number;
}

interface Realized {
  spec: HostNetworkSpec;
  state: 'ready' | 'failed';
  reason: string | null;
  ports: Map<string, PortRecord>;
  /** The link group of its taps here (even; the odd one above it takes taps being deleted). */
  group: number;
}

/** What one call of a coalesced change gets: its own result or its own failure. */
type Outcome<R> = { ok: R } | { err: unknown };

/** Calls of one kind waiting in the queue together, to be done as one change. */
interface Batch {
  kind: 'plug' | 'unplug';
  items: { item: never; done: (o: Outcome<never>) => void }[];
}

export class KernelNetworks implements HostNetworks {
  readonly #shell: HostShell;
  readonly #store: NetworkStore;
  readonly #log: Logger;
  readonly #nets = new Map<string, Realized>();
  #queue: Promise<unknown> = Promise.resolve();
  /** The batch last in the queue, open to calls of its kind until anything else is queued. */
  #open: Batch | undefined;
  #caps: Promise<NetworkCapabilities> | undefined;
  #watch: NodeJS.Timeout | undefined;

  constructor(opts: KernelNetworksOptions) {
    this.#shell = hostShell(opts.netns);
    this.#store = new NetworkStore(opts.stateDir);
    this.#log = opts.log;
    const every = opts.watchMs ?? 2000;
    if (every > 0) {
      this.#watch = setInterval(() => void this.#restartDeadDnsmasq(), every);
      this.#watch.unref();
    }
  }

  /** Runs `fn` after every change before it. */
  #serial<T>(fn: () => Promise<T>): Promise<T> {
    this.#open = undefined;
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Queues `item` with the calls of the same kind queued right before it (nothing else between
   * them), so plugs or unplugs arriving together (a host starting or stopping many VMs) cost one
   * `ip -batch` and one nftables transaction, not a few processes each. Order is kept: a call
   * never joins a batch queued before another change.
   */
  #coalesced<I, R>(kind: Batch['kind'], item: I, run: (items: I[]) => Promise<Outcome<R>[]>): Promise<R> {
    let batch = this.#open;
    if (batch?.kind !== kind) {
      const b: Batch = { kind, items: [] };
      void this.#serial(async () => {
        if (this.#open === b) this.#open = undefined;
        const items = b.items as unknown as { item: I; done: (o: Outcome<R>) => void }[];
        const outcomes = await run(items.map((x) => x.item)).catch((err) => items.map(() => ({ err })));
        for (const [i, x] of items.entries()) x.done(outcomes[i]);
      });
      this.#open = b;
      batch = b;
    }
    const items = batch.items as unknown as { item: I; done: (o: Outcome<R>) => void }[];
    return new Promise<R>((resolve, reject) =>
      items.push({ item, done: (o) => ('ok' in o ? resolve(o.ok) : reject(o.err)) }),
    );
  }

  capabilities(): Promise<NetworkCapabilities> {
    this.#caps ??= detectCapabilities();
    return this.#caps;
  }

  list(): HostNetworkState[] {
    return [...this.#nets.values()].map((n) => this.#stateOf(n));
  }

  #stateOf(n: Realized): HostNetworkState {
    const paths = dnsmasqPaths(this.#store.dir(n.spec.id));
    return {
      id: n.spec.id,
      name: n.spec.name,
      bridge: n.spec.bridge,
      state: n.state,
      reason: n.reason,
      dhcp: !wantsDnsmasq(n.spec) ? 'none' : dnsmasqPid(paths) ? 'running' : 'stopped',
      ports: n.ports.size,
    };
  }

  apply(spec: HostNetworkSpec): Promise<HostNetworkState> {
    return this.#serial(async () => {
      const others = [...this.#nets.values()].map((n) => n.spec);
      const problem = specProblem(spec, others);
      if (problem) throw new TernError('invalid_request', `network ${spec.name}: ${problem}`);
      const old = this.#nets.get(spec.id);
      if (old && old.ports.size > 0 && old.spec.bridge !== spec.bridge)
        throw new TernError(
          'conflict',
          `network ${spec.name}: its bridge cannot be renamed while ports use it`,
        );
      await this.#refuseForeignBridge(spec);
      if (old && old.spec.bridge !== spec.bridge) await this.#teardown(old.spec);
      this.#store.saveSpec(spec);
      const group = old?.group ?? this.#newGroup(spec.id);
      this.#store.saveGroup(spec.id, group);
      const n: Realized = { spec, state: 'ready', reason: null, ports: old?.ports ?? new Map(), group };
      this.#nets.set(spec.id, n);
      await this.#realize(n);
      return this.#stateOf(n);
    });
  }

  /** A link group for a network's taps that no other network here has. */
  #newGroup(id: string): number {
    return linkGroup(id, new Set([...this.#nets.values()].map((n) => n.group)));
  }

  /** A bridge name the manager gives must not be an interface that is not this network's. */
  async #refuseForeignBridge(spec: HostNetworkSpec): Promise<void> {
    if (this.#nets.get(spec.id)?.spec.bridge === spec.bridge) return;
    if ((await links(this.#shell)).some((l) => l.ifname === spec.bridge))
      throw new TernError(
        'conflict',
        `network ${spec.name}: interface ${spec.bridge} exists on this host and is not Tern's`,
      );
  }

  /** Realizes a kept spec; what fails is recorded as the network's state, with the reason. */
  async #realize(n: Realized): Promise<void> {
    const { spec } = n;
    const cannot = hostProblem(spec, await this.capabilities());
    if (cannot) {
      Object.assign(n, { state: 'failed', reason: cannot });
      return;
    }
    try {
      await ensureBridge(this.#shell, spec);
      if (spec.overlay) await ensureVxlan(this.#shell, spec);
      await this.#nft(networkRules(spec, [...n.ports.values()]));
      const paths = dnsmasqPaths(this.#store.dir(spec.id));
      if (wantsDnsmasq(spec)) await ensureDnsmasq(this.#shell, spec, paths);
      else await stopDnsmasq(paths);
      Object.assign(n, { state: 'ready', reason: null });
    } catch (err) {
      this.#log.error({ network: spec.id, err }, 'realizing a network failed');
      Object.assign(n, { state: 'failed', reason: String((err as Error).message).slice(0, 2000) });
    }
  }

  #nft(text: string): Promise<string> {
    return this.#shell.run(['nft', '-f', '-'], text);
  }

  remove(id: string): Promise<void> {
    return this.#serial(async () => {
      const n = this.#nets.get(id);
      if (!n) return;
      if (n.ports.size > 0)
        throw new TernError('conflict', `network ${n.spec.name} has ${n.ports.size} VM NICs on this host`);
      await this.#teardown(n.spec);
      this.#nets.delete(id);
      this.#store.drop(id);
    });
  }

  async #teardown(spec: HostNetworkSpec): Promise<void> {
    await stopDnsmasq(dnsmasqPaths(this.#store.dir(spec.id)));
    await this.#nft(removeNetworkRules(spec.bridge));
    await removeVxlans(this.#shell, spec.bridge);
    await removeBridge(this.#shell, spec.bridge);
  }

  reconcile(): Promise<void> {
    return this.#serial(async () => {
      const kept = this.#store.load((file) =>
        this.#log.warn({ file }, 'set aside an unreadable network file'),
      );
      for (const { spec, ports, group } of kept) {
        const n: Realized = {
          spec,
          state: 'ready',
          reason: null,
          ports: new Map(ports.map((p) => [p.tap, p])),
          group: group ?? this.#newGroup(spec.id),
        };
        if (group === null) this.#store.saveGroup(spec.id, n.group);
        this.#nets.set(spec.id, n);
        // The bridge and the ruleset first: a tap can only be put on a bridge that is there, and
        // comes up only once its chains are in place.
        await this.#realize(n);
        if (n.state !== 'ready' || ports.length === 0) continue;
        // A port whose tap went (the host rebooted) is made again, one that lost its bridge (the
        // bridge was made again) put back on it, all in the network's link group and up, in one
        // `ip -batch`: its VM's start opens it. If the batch fails, port by port, so one tap that
        // cannot be made does not keep the others off.
        const have = new Map((await links(this.#shell)).map((l) => [l.ifname, l]));
        const lines = (p: PortRecord) =>
          have.has(p.tap)
            ? [`link set dev ${p.tap} master ${spec.bridge} mtu ${spec.mtu} group ${n.group} up`]
            : tapLines(p.tap, spec.bridge, spec.mtu, n.group);
        const all = await ipBatch(this.#shell, ports.flatMap(lines)).then(
          () => true,
          () => false,
        );
        // What the batch did before it stopped is looked at again.
        const now = all ? have : new Map((await links(this.#shell)).map((l) => [l.ifname, l]));
        for (const p of all ? [] : ports) {
          const tap = now.get(p.tap);
          const made = !tap
            ? makeTap(this.#shell, p.tap, spec.bridge, spec.mtu)
            : tap.master !== spec.bridge
              ? enslaveTap(this.#shell, p.tap, spec.bridge, spec.mtu)
              : Promise.resolve();
          await made
            .then(() => tapUp(this.#shell, p.tap))
            .catch((err) =>
              this.#log.error({ network: spec.id, tap: p.tap, err }, 'plugging a kept port again failed'),
            );
        }
      }
    });
  }

  plug(port: PortSpec): Promise<string> {
    return this.#coalesced('plug', port, (ports: PortSpec[]) => this.#plugAll(ports));
  }

  /**
   * Plugs ports: the chains of all in one nftables transaction, then the taps made, on their
   * bridges and up in one `ip -batch`, so a tap never comes up before its chains. If the batch
   * fails, what it made is taken back and each port is tried alone, so one bad port fails alone.
   */
  async #plugAll(ports: PortSpec[]): Promise<Outcome<string>[]> {
    const out: Outcome<string>[] = [];
    const todo: { n: Realized; rec: PortRecord; i: number }[] = [];
    for (const [i, port] of ports.entries()) {
      const n = this.#nets.get(port.network);
      if (!n)
        out[i] = { err: new TernError('conflict', `network ${port.network} is not realized on this host`) };
      else if (n.state !== 'ready')
        out[i] = { err: new TernError('conflict', `network ${n.spec.name} failed here: ${n.reason}`) };
      else todo.push({ n, rec: { tap: newTapName(), ...port }, i });
    }
    if (todo.length === 0) return out;
    // Recorded first: a crash midway leaves records the VMs' stop or reconcile removes.
    for (const { rec } of todo) this.#store.savePort(rec);
    try {
      await this.#nft(todo.map(({ n, rec }) => addPortRules(n.spec, rec, false)).join(''));
      for (const { n, rec } of todo) n.ports.set(rec.tap, rec);
      await ipBatch(
        this.#shell,
        todo.flatMap(({ n, rec }) => tapLines(rec.tap, n.spec.bridge, n.spec.mtu, n.group)),
      );
      for (const { rec, i } of todo) out[i] = { ok: rec.tap };
    } catch (err) {
      const gone = todo.map(({ n, rec }) => ({ n, tap: rec.tap }));
      await removeTaps(
        this.#shell,
        gone.map((g) => g.tap),
        todo[0].n.group + 1,
      ).catch(() => Promise.all(gone.map((g) => removeTap(this.#shell, g.tap).catch(() => undefined))));
      await this.#forget(gone);
      if (todo.length === 1) out[todo[0].i] = { err };
      else for (const { i } of todo) [out[i]] = await this.#plugAll([ports[i]]);
    }
    return out;
  }

  /** Drops unplugged ports' chains (in one transaction if they are all there) and records. */
  async #forget(gone: { n: Realized; tap: string }[]): Promise<void> {
    if (gone.length === 0) return;
    await this.#nft(gone.map(({ n, tap }) => removePortRules(n.spec.bridge, tap)).join('')).catch(
      async () => {
        for (const { n, tap } of gone)
          await this.#nft(removePortRules(n.spec.bridge, tap)).catch(() => undefined);
      },
    );
    for (const { n, tap } of gone) {
      n.ports.delete(tap);
      this.#store.dropPort(n.spec.id, tap);
    }
  }

  #portNet(tap: string): Realized | undefined {
    return [...this.#nets.values()].find((n) => n.ports.has(tap));
  }

  updatePort(tap: string, rules: PortSpec['rules']): Promise<void> {
    return this.#serial(async () => {
      const n = this.#portNet(tap);
      if (!n) throw new TernError('not_found', `no port ${tap} on this host`);
      const rec = { ...n.ports.get(tap)!, rules };
      await this.#nft(addPortRules(n.spec, rec, true));
      n.ports.set(tap, rec);
      this.#store.savePort(rec);
    });
  }

  unplug(tap: string): Promise<void> {
    return this.#coalesced('unplug', tap, (taps: string[]) => this.#unplugAll(taps));
  }

  /**
   * Unplugs ports: every tap deleted in one netlink request (`removeTaps`), then every port's
   * chains in one transaction. If the taps cannot go together, each is removed alone and one
   * that fails fails its own call.
   */
  async #unplugAll(taps: string[]): Promise<Outcome<void>[]> {
    const out: Outcome<void>[] = taps.map(() => ({ ok: undefined }));
    const found = new Map<string, Realized>();
    for (const tap of taps) {
      const n = this.#portNet(tap);
      if (n) found.set(tap, n);
    }
    if (found.size === 0) return out;
    const all = [...found].map(([tap, n]) => ({ n, tap }));
    let gone = all;
    try {
      await removeTaps(this.#shell, [...found.keys()], all[0].n.group + 1);
    } catch {
      gone = [];
      for (const g of all) {
        try {
          await removeTap(this.#shell, g.tap);
          gone.push(g);
        } catch (err) {
          taps.forEach((t, i) => {
            if (t === g.tap) out[i] = { err };
          });
        }
      }
    }
    await this.#forget(gone);
    return out;
  }

  ports(): { tap: string; vm: string; mac: string }[] {
    return [...this.#nets.values()].flatMap((n) =>
      [...n.ports.values()].map(({ tap, vm, mac }) => ({ tap, vm, mac })),
    );
  }

  portsOf(vm: string): string[] {
    return [...this.#nets.values()].flatMap((n) =>
      [...n.ports.values()].filter((p) => p.vm === vm).map((p) => p.tap),
    );
  }

  /** A dnsmasq that died is started again (its leases are in its lease file). */
  async #restartDeadDnsmasq(): Promise<void> {
    for (const n of this.#nets.values()) {
      if (n.state !== 'ready' || !wantsDnsmasq(n.spec)) continue;
      const paths = dnsmasqPaths(this.#store.dir(n.spec.id));
      if (dnsmasqPid(paths)) continue;
      await this.#serial(async () => {
        if (this.#nets.get(n.spec.id) !== n || dnsmasqPid(paths)) return;
        this.#log.warn({ network: n.spec.id }, "the network's dnsmasq is gone; starting it again");
        await ensureDnsmasq(this.#shell, n.spec, paths).catch((err) =>
          this.#log.error({ network: n.spec.id, err }, 'starting dnsmasq again failed'),
        );
      });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#watch);
    await this.#queue;
  }
}
