/**
 * The network inventory: networks and the NICs on them. The database's keys guard what the
 * pure decisions (plan.ts, ipam.ts, mac.ts) chose: a MAC is unique cluster-wide, an address
 * unique in its network, and a network with NICs on it cannot go.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { CreateNetworkRequest, Network } from '../../wire/network.ts';
import { type Db, now } from '../db/database.ts';
import type { NetworkTable } from '../db/schema.ts';
import { type AddressPlan, checkRequested, nextFree } from './ipam.ts';
import { allocateMac, checkRequestedMac, gatewayMacPrefix, nicMacPrefix } from './mac.ts';
import { planNetwork } from './plan.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const addressPlanOf = (n: NetworkTable): AddressPlan => ({
  subnet: n.subnet,
  gateway: n.gateway,
  dhcp: n.dhcpStart && n.dhcpEnd ? { start: n.dhcpStart, end: n.dhcpEnd } : null,
});

export function networkToWire(n: NetworkTable, nics: number): Network {
  const plan = addressPlanOf(n);
  return {
    id: n.id,
    name: n.name,
    type: n.type as Network['type'],
    subnet: n.subnet,
    gateway: n.gateway,
    dns: JSON.parse(n.dns) as string[],
    dhcp: plan.dhcp,
    domain: n.domain,
    uplink: n.uplink,
    vlan: n.vlan,
    vni: n.vni,
    mtu: n.mtu,
    bridge: n.bridge,
    nics,
    createdAt: n.createdAt,
  };
}

/** Tells a unique-key refusal from the database apart from other failures. */
export const isUniqueViolation = (err: unknown): boolean =>
  /UNIQUE|duplicate key/i.test((err as Error)?.message ?? '');

export class NetworkStore {
  readonly #db: Db;
  readonly #random: (n: number) => Buffer;
  /**
   * MACs and addresses given to NICs not recorded yet (a create between its plan and its
   * insert): never given twice in this manager, whatever runs at the same time.
   */
  readonly #pendingMacs = new Set<string>();
  readonly #pendingIps = new Map<string, Set<string>>();

  constructor(db: Db, random: (n: number) => Buffer = randomBytes) {
    this.#db = db;
    this.#random = random;
  }

  async create(req: CreateNetworkRequest): Promise<Network> {
    const vnis = await this.#db.selectFrom('networks').select('vni').where('vni', 'is not', null).execute();
    const macs = await this.#db.selectFrom('networks').select('gatewayMac').execute();
    const row = planNetwork(req, {
      id: randomUUID(),
      gatewayMac: allocateMac(new Set(macs.map((m) => m.gatewayMac)), this.#random, gatewayMacPrefix),
      vnisInUse: new Set(vnis.map((v) => v.vni!)),
      now: now(),
    });
    try {
      await this.#db.insertInto('networks').values(row).execute();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const what = /vni/i.test((err as Error).message) ? `VNI ${row.vni}` : `the name ${row.name}`;
      throw new TernError('conflict', `a network with ${what} exists`);
    }
    return networkToWire(row, 0);
  }

  /** By name or id; undefined when there is none. */
  async find(ref: string): Promise<NetworkTable | undefined> {
    return this.#db
      .selectFrom('networks')
      .selectAll()
      .where(uuidPattern.test(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
  }

  async row(ref: string): Promise<NetworkTable> {
    const row = await this.find(ref);
    if (!row) throw new TernError('not_found', `network ${ref} does not exist`);
    return row;
  }

  async rows(): Promise<NetworkTable[]> {
    return this.#db.selectFrom('networks').selectAll().orderBy('name').execute();
  }

  async get(ref: string): Promise<Network> {
    const row = await this.row(ref);
    return networkToWire(row, await this.#nicCount(row.id));
  }

  async list(): Promise<Network[]> {
    const counts = await this.#db
      .selectFrom('nics')
      .select(['networkId', (eb) => eb.fn.countAll<number>().as('n')])
      .where('networkId', 'is not', null)
      .groupBy('networkId')
      .execute();
    const by = new Map(counts.map((c) => [c.networkId, Number(c.n)]));
    return (await this.rows()).map((r) => networkToWire(r, by.get(r.id) ?? 0));
  }

  /** Refused while a NIC is on it: its VMs would lose their network and their addresses. */
  async remove(ref: string): Promise<NetworkTable> {
    const row = await this.row(ref);
    const users = await this.#db
      .selectFrom('nics')
      .innerJoin('vms', 'vms.id', 'nics.vmId')
      .select('vms.name')
      .where('nics.networkId', '=', row.id)
      .orderBy('vms.name')
      .limit(11)
      .execute();
    if (users.length) {
      const names = users.slice(0, 10).map((u) => u.name);
      throw new TernError(
        'conflict',
        `network ${row.name} is in use by ${names.join(', ')}${users.length > 10 ? ' and more' : ''}: remove their NICs or the VMs first`,
        { vms: names },
      );
    }
    try {
      await this.#db.deleteFrom('networks').where('id', '=', row.id).execute();
    } catch (err) {
      // A NIC that came in between: the foreign key refuses, and so does this.
      if (/FOREIGN KEY|foreign key/.test((err as Error).message))
        throw new TernError('conflict', `network ${row.name} got a NIC meanwhile; it stays`);
      throw err;
    }
    return row;
  }

  async #nicCount(networkId: string): Promise<number> {
    const r = await this.#db
      .selectFrom('nics')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('networkId', '=', networkId)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }

  /**
   * A free MAC: from a random point under Tern's prefix, the first that no NIC has. Only the
   * MACs in use from that point on are read (a few, not the cluster's); `taken` holds those
   * chosen for the same VM and not recorded yet.
   */
  async freeMac(taken: ReadonlySet<string> = new Set()): Promise<string> {
    const start = this.#random(3);
    const first = allocateMac(new Set(), () => start);
    const rows = await this.#db
      .selectFrom('nics')
      .select('mac')
      .where('mac', '>=', first)
      .where('mac', '<', `${nicMacPrefix};`)
      .orderBy('mac')
      .limit(4096)
      .execute();
    const mac = allocateMac(
      new Set([...taken, ...this.#pendingMacs, ...rows.map((r) => r.mac)]),
      () => start,
    );
    this.#pendingMacs.add(mac);
    return mac;
  }

  /** A MAC someone asked for, checked against every NIC's. */
  async requestedMac(mac: string, taken: ReadonlySet<string> = new Set()): Promise<string> {
    const m = mac.toLowerCase();
    const row = await this.#db.selectFrom('nics').select('mac').where('mac', '=', m).executeTakeFirst();
    const checked = checkRequestedMac(
      m,
      row || taken.has(m) || this.#pendingMacs.has(m) ? new Set([m]) : new Set(),
    );
    this.#pendingMacs.add(checked);
    return checked;
  }

  /** An address on the network: the one asked for, checked, or the next free one. */
  async address(
    network: NetworkTable,
    requested?: string,
    taken: ReadonlySet<string> = new Set(),
  ): Promise<string> {
    const rows = await this.#db.selectFrom('nics').select('ip').where('networkId', '=', network.id).execute();
    const pending = this.#pendingIps.get(network.id) ?? new Set<string>();
    const used = new Set([...taken, ...pending, ...rows.map((r) => r.ip!).filter(Boolean)]);
    const plan = addressPlanOf(network);
    const ip = requested === undefined ? nextFree(plan, used) : checkRequested(plan, requested, used);
    this.#pendingIps.set(network.id, pending.add(ip));
    return ip;
  }

  /** The NICs given these are recorded now (or never will be): their MACs and addresses are the database's to guard. */
  release(nics: readonly { mac: string; networkId: string | null; ip: string | null }[]): void {
    for (const n of nics) {
      this.#pendingMacs.delete(n.mac);
      if (n.networkId && n.ip) this.#pendingIps.get(n.networkId)?.delete(n.ip);
    }
  }
}
