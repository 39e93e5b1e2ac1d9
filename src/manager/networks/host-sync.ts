/**
 * Keeps every host's networks as the inventory says: on any change, and whenever a host has
 * (re)connected and reported, each host is given the spec of every network (idempotent on its
 * side) and told to drop the networks the inventory no longer has. What each host answers is
 * kept: placement sends a VM only where its networks are ready.
 *
 * One sync per host at a time; a change during a sync makes one more after it, never a pile.
 * A change sends a host only the networks whose spec differs from what it last realized; a
 * host that (re)connected is sent every one, and asked what it holds.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../log.ts';
import type { HostNetworkSpec, HostNetworkState, Lease } from '../../wire/network.ts';
import type { Db } from '../db/database.ts';
import type { NetworkTable } from '../db/schema.ts';
import type { EventBus } from '../events/bus.ts';
import { hostNetworkSpec, ipv4Of, type OverlayHost, overlayRefusal } from './host-spec.ts';

/** What a host's agent does for networks (the agent routes of src/wire/agent-routes.ts). */
export interface NetworkAgent {
  listNetworks(): Promise<HostNetworkState[]>;
  putNetwork(spec: HostNetworkSpec): Promise<HostNetworkState>;
  deleteNetwork(id: string): Promise<void>;
}

export interface NetworkSyncDeps {
  db: Db;
  log: Logger;
  /** The agent of a host, or null while the manager has no network routes to call on it. */
  agentOf: (hostId: string) => NetworkAgent | null;
  /** Told of every change too (running ports' security rules follow the same changes). */
  onChange?: () => void;
}

interface Inventory {
  networks: NetworkTable[];
  hosts: OverlayHost[];
  leases: Map<string, Lease[]>;
  /** Per network, a digest of all its hosts' specs have in common (the row, leases, every host's address). */
  keys: Map<string, string>;
}

const failed = (n: NetworkTable, reason: string): HostNetworkState => ({
  id: n.id,
  name: n.name,
  bridge: n.bridge,
  state: 'failed',
  reason: reason.slice(0, 2000),
  dhcp: 'none',
  ports: 0,
});

export class NetworkSync {
  readonly #d: NetworkSyncDeps;
  /** Host → network id → what the host last said of it. */
  readonly #states = new Map<string, Map<string, HostNetworkState>>();
  readonly #running = new Map<string, Promise<void>>();
  readonly #again = new Set<string>();
  /** Hosts to be sent every network at their next sync: they (re)connected. */
  readonly #forced = new Set<string>();
  /** Host → network id → the spec (JSON) it last realized. */
  readonly #sent = new Map<string, Map<string, string>>();
  /** Host lists being read for a change: their syncs are due. */
  readonly #listing = new Set<Promise<void>>();
  #closed = false;
  /** Bumped by every change: a sync reads the inventory again once per change. */
  #generation = 0;
  #read: { generation: number; read: Promise<Inventory> } | undefined;
  /** The hosts' cluster addresses at the last sync: overlays' peers. */
  #peers: string | undefined;

  constructor(d: NetworkSyncDeps) {
    this.#d = d;
  }

  /** The inventory changed: every host that is up gets its networks again. */
  changed(): void {
    this.#generation++;
    this.#d.onChange?.();
    const listing = this.#d.db
      .selectFrom('hosts')
      .select('id')
      .where('state', '!=', 'offline')
      .execute()
      .then((rows) => {
        for (const r of rows) this.#schedule(r.id);
      })
      .catch((err: Error) => this.#d.log.error({ err }, 'could not list hosts to give them their networks'))
      .finally(() => this.#listing.delete(listing));
    this.#listing.add(listing);
  }

  /**
   * Follows VM changes that move leases: a VM made with a NIC on a network (its lease and name),
   * a VM gone (its NICs went with it). Nothing is sent while there is no managed network.
   */
  watch(bus: EventBus): () => void {
    return bus.subscribe((e) => {
      const made =
        e.type === 'vm' && e.vm.state === 'creating' && e.vm.nics.some((n) => n.network.mode === 'network');
      if (!made && e.type !== 'vm.deleted') return;
      void this.#d.db
        .selectFrom('networks')
        .select('id')
        .limit(1)
        .execute()
        .then((some) => {
          if (some.length) this.changed();
        })
        .catch((err: Error) => this.#d.log.error({ err }, 'could not read the networks'));
    });
  }

  /** A host connected and reported: it gets every network (it may have missed changes, or lost them). */
  hostReported(hostId: string): void {
    this.#forced.add(hostId);
    this.#schedule(hostId);
  }

  #schedule(hostId: string): void {
    if (this.#closed) return;
    if (this.#running.has(hostId)) {
      this.#again.add(hostId);
      return;
    }
    const run = this.sync(hostId)
      .catch((err: Error) => this.#d.log.warn({ err, hostId }, 'giving a host its networks failed'))
      .finally(() => {
        this.#running.delete(hostId);
        if (this.#again.delete(hostId)) this.#schedule(hostId);
      });
    this.#running.set(hostId, run);
  }

  /** Resolves once no sync runs or is due (a start waits for its VM's leases to be out). */
  async settled(): Promise<void> {
    while (this.#running.size || this.#listing.size)
      await Promise.all([...this.#running.values(), ...this.#listing]);
  }

  close(): void {
    this.#closed = true;
  }

  /**
   * Gives one host the networks it lacks or holds otherwise than the inventory says, and takes
   * away the ones the inventory no longer has; `force`: every network, and what it holds is asked.
   */
  async sync(hostId: string, force = this.#forced.has(hostId)): Promise<void> {
    this.#forced.delete(hostId);
    const agent = this.#d.agentOf(hostId);
    if (!agent) return;
    let { networks, hosts, leases, keys } = await this.#inventory();
    if (!hosts.some((h) => h.id === hostId)) {
      // A host that joined after the last read: read again.
      this.#generation++;
      ({ networks, hosts, leases, keys } = await this.#inventory());
    }
    const host = hosts.find((h) => h.id === hostId);
    if (!host) return;
    // A host that joined or moved is a new peer for every overlay on the others.
    const peers = hosts
      .map((h) => h.ipv4 ?? '')
      .sort()
      .join(' ');
    if (this.#peers !== undefined && this.#peers !== peers) this.changed();
    this.#peers = peers;
    const states = new Map<string, HostNetworkState>();
    const before = this.#states.get(hostId);
    const sent = this.#sent.get(hostId) ?? new Map<string, string>();
    this.#sent.set(hostId, sent);
    for (const n of networks) {
      const why = n.type === 'overlay' ? overlayRefusal(host) : null;
      if (why) {
        states.set(n.id, failed(n, why));
        continue;
      }
      // What the host's spec is made of: the network's part (the same for every host) and its own address.
      const text = `${keys.get(n.id)}|${host.ipv4}`;
      const last = before?.get(n.id);
      if (!force && last?.state === 'ready' && sent.get(n.id) === text) {
        states.set(n.id, last);
        continue;
      }
      const spec = hostNetworkSpec(n, leases.get(n.id) ?? [], host, hosts);
      const state = await agent
        .putNetwork(spec)
        .catch((err: Error) => failed(n, `the host could not realize it: ${err.message}`));
      if (state.state === 'ready') sent.set(n.id, text);
      else sent.delete(n.id);
      states.set(n.id, state);
    }
    const known = new Set(networks.map((n) => n.id));
    const dropped = [...sent.keys()].filter((id) => !known.has(id));
    for (const id of dropped) sent.delete(id);
    this.#states.set(hostId, states);
    await this.#record(hostId, states);
    if (!force && dropped.length === 0) return;
    for (const held of await agent.listNetworks()) {
      if (known.has(held.id)) continue;
      // A host refuses while a VM's NIC there is on it; the next sync tries again.
      await agent.deleteNetwork(held.id).catch((err: Error) => {
        sent.set(held.id, '');
        this.#d.log.warn(
          { err, hostId, network: held.name },
          'a host kept a network the inventory no longer has',
        );
      });
    }
  }

  /** What the host said, for placement (which reads it also after a manager restart). */
  async #record(hostId: string, states: ReadonlyMap<string, HostNetworkState>): Promise<void> {
    const at = new Date().toISOString();
    await this.#d.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('hostNetworks').where('hostId', '=', hostId).execute();
      for (const [networkId, s] of states) {
        // A network deleted while this host synced has no row to refer to.
        const exists = await trx
          .selectFrom('networks')
          .select('id')
          .where('id', '=', networkId)
          .executeTakeFirst();
        if (!exists) continue;
        await trx
          .insertInto('hostNetworks')
          .values({
            hostId,
            networkId,
            state: s.state,
            reason: s.reason,
            dhcp: s.dhcp,
            ports: s.ports,
            updatedAt: at,
          })
          .execute();
      }
    });
  }

  /**
   * Networks, hosts and leases, read once per change however many hosts sync for it: every
   * change that moves them says so (`changed`), which starts a new read.
   */
  #inventory(): Promise<Inventory> {
    if (this.#read?.generation !== this.#generation) {
      const read = (async () => {
        const networks = await this.#d.db.selectFrom('networks').selectAll().orderBy('name').execute();
        const hosts = (await this.#d.db.selectFrom('hosts').select(['id', 'address']).execute()).map(
          (h): OverlayHost => ({ id: h.id, ipv4: ipv4Of(h.address) }),
        );
        const leases = await this.#leases();
        const all = hosts.map((h) => h.ipv4 ?? '').sort();
        const keys = new Map(
          networks.map((n) => [
            n.id,
            createHash('sha256')
              .update(JSON.stringify([n, leases.get(n.id) ?? [], all]))
              .digest('base64'),
          ]),
        );
        return { networks, hosts, leases, keys };
      })();
      this.#read = { generation: this.#generation, read };
      // A failed read is not kept.
      read.catch(() => {
        if (this.#read?.read === read) this.#read = undefined;
      });
    }
    return this.#read.read;
  }

  /** Every NIC with an address, by network: its MAC, address and its VM's name. */
  async #leases(): Promise<Map<string, Lease[]>> {
    const rows = await this.#d.db
      .selectFrom('nics')
      .innerJoin('vms', 'vms.id', 'nics.vmId')
      .select(['nics.networkId', 'nics.mac', 'nics.ip', 'vms.name'])
      .where('nics.networkId', 'is not', null)
      .where('nics.ip', 'is not', null)
      .execute();
    const by = new Map<string, Lease[]>();
    for (const r of rows) {
      const list = by.get(r.networkId!) ?? [];
      list.push({ mac: r.mac, ip: r.ip!, hostname: r.name });
      by.set(r.networkId!, list);
    }
    return by;
  }

  /** What every host last said of one network, by host id (absent: nothing yet). */
  async statesOf(network: {
    id: string;
    name: string;
    bridge: string;
  }): Promise<Map<string, HostNetworkState>> {
    const rows = await this.#d.db
      .selectFrom('hostNetworks')
      .selectAll()
      .where('networkId', '=', network.id)
      .execute();
    return new Map(
      rows.map((r) => [
        r.hostId,
        {
          id: network.id,
          name: network.name,
          bridge: network.bridge,
          state: r.state as HostNetworkState['state'],
          reason: r.reason,
          dhcp: r.dhcp as HostNetworkState['dhcp'],
          ports: r.ports,
        },
      ]),
    );
  }
}
