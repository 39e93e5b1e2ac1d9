/** The VM inventory: rows in the database, shown as wire `Vm` objects, changes published. */

import { usefulAddresses } from '../../agent/qemu/guest-info.ts';
import { TernError } from '../../errors.ts';
import type { AgentVm } from '../../wire/agent.ts';
import { defaultVmHaPolicy, type VmHaPolicy } from '../../wire/ha.ts';
import { emptyGuestInfo, type GuestInfo, type PowerState, type Vm, type VmSpec } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';
import type { NicTable, VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { EventBus } from '../events/bus.ts';
import { imageNameOf } from '../library/images.ts';
import type { VmPlan } from './plan.ts';
import { hostUnreachable, reconcileVm, type VmState } from './reconcile.ts';

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A NIC as the inventory records it beside its VM. */
export type NicRow = Omit<NicTable, 'vmId' | 'createdAt'>;

/** The NICs of a spec, without security groups (which only a create or NIC add knows). */
export function nicRowsOf(spec: VmSpec): NicRow[] {
  return spec.nics.map((n) => ({
    mac: n.mac,
    networkId: n.network.mode === 'network' ? n.network.network : null,
    ip: n.network.mode === 'network' ? n.network.ip : null,
    securityGroup: null,
  }));
}

export interface VmListFilter {
  state?: PowerState;
  host?: string;
  namePrefix?: string;
  /** Only VMs this user owns. */
  ownerId?: string;
  limit: number;
  after?: string;
}

/** The inventory row of a VM about to be created from a plan. */
export function newVmRow(
  plan: VmPlan,
  hostId: string,
  template: string | null,
  clientMachineId: string,
  imagePool: { pool: string; version: number } | null = null,
  cpuMode: 'compat' | 'host' = 'compat',
): VmTable {
  return {
    id: plan.spec.id,
    name: plan.spec.name,
    hostId,
    state: 'creating',
    stateReason: null,
    template,
    image: null,
    clone: plan.clone,
    clientMachineId,
    imagePool: imagePool?.pool ?? null,
    poolVersion: imagePool?.version ?? null,
    cpuMode,
    haPolicy: null,
    haRestartFrom: null,
    replicaOf: null,
    spec: JSON.stringify(plan.spec),
    diskSizes: JSON.stringify(plan.diskSizes),
    guest: JSON.stringify(emptyGuestInfo()),
    vncPort: null,
    ownerId: null,
    project: null,
    createdAt: now(),
    updatedAt: now(),
  };
}

export class VmStore {
  readonly #db: Db;
  readonly #bus: EventBus;
  readonly #hostNames = new Map<string, string>();

  constructor(db: Db, bus: EventBus) {
    this.#db = db;
    this.#bus = bus;
  }

  /** Host names are shown on every VM; hosts register theirs here. */
  setHostName(id: string, name: string): void {
    this.#hostNames.set(id, name);
  }

  toWire(row: VmTable): Vm {
    const spec = vmSpecOf(row);
    const sizes = JSON.parse(row.diskSizes) as number[];
    // Rows written before a guest fact existed lack it; the defaults fill it in.
    const guest = { ...emptyGuestInfo(), ...(JSON.parse(row.guest) as Partial<GuestInfo>) };
    return {
      id: row.id,
      name: row.name,
      host: row.hostId ? (this.#hostNames.get(row.hostId) ?? row.hostId) : null,
      state: row.state as PowerState,
      stateReason: row.stateReason,
      template: row.template,
      clone: row.clone as Vm['clone'],
      clientMachineId: row.clientMachineId,
      vcpus: spec.vcpus,
      memoryMiB: spec.memoryMiB,
      cpuMode: row.cpuMode as Vm['cpuMode'],
      ha: row.haPolicy ? (JSON.parse(row.haPolicy) as VmHaPolicy) : defaultVmHaPolicy,
      cpuModel: spec.cpuModel,
      disks: spec.disks.map((d, i) => ({ ...d, sizeBytes: sizes[i] ?? 0 })),
      nics: spec.nics,
      image: row.image ?? null,
      firmware: spec.firmware ?? 'bios',
      cdrom: spec.cdrom
        ? { medium: spec.cdrom.medium, image: spec.cdrom.medium ? imageNameOf(spec.cdrom.medium) : null }
        : null,
      guest,
      ipAddresses: usefulAddresses(guest.interfaces),
      vncPort: row.vncPort,
      ownerId: row.ownerId,
      project: row.project,
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
    };
  }

  /**
   * Records a VM and its NICs together: a MAC another NIC has, or an address taken in its
   * network meanwhile, refuses the VM as a whole (the database's keys decide, not a guess).
   */
  async insert(row: VmTable, nics: readonly NicRow[] = nicRowsOf(vmSpecOf(row))): Promise<Vm> {
    try {
      await this.#db.transaction().execute(async (trx) => {
        await trx.insertInto('vms').values(row).execute();
        for (const n of nics)
          await trx
            .insertInto('nics')
            .values({ ...n, vmId: row.id, createdAt: row.createdAt })
            .execute();
      });
    } catch (err) {
      const message = (err as Error).message;
      if (/UNIQUE.*nics\.mac|nics_pkey/i.test(message))
        throw new TernError('conflict', `VM ${row.name}: one of its MACs is another NIC's`);
      if (/UNIQUE.*nics\.network_id|nics_network_ip/i.test(message))
        throw new TernError('conflict', `VM ${row.name}: its address was taken meanwhile; ask again`);
      if (/FOREIGN KEY/i.test(message))
        throw new TernError('conflict', `VM ${row.name}: a network or security group of its NICs is gone`);
      if (/UNIQUE/i.test(message)) throw new TernError('conflict', `a VM named ${row.name} exists`);
      throw err;
    }
    return this.#publish(row);
  }

  /** By name or id; undefined when there is none. */
  async find(ref: string): Promise<VmTable | undefined> {
    return this.#db
      .selectFrom('vms')
      .selectAll()
      .where(uuidPattern.test(ref) ? 'id' : 'name', '=', ref)
      .executeTakeFirst();
  }

  async row(ref: string): Promise<VmTable> {
    const row = await this.find(ref);
    if (!row) throw new TernError('not_found', `VM ${ref} does not exist`);
    return row;
  }

  async get(ref: string): Promise<Vm> {
    return this.toWire(await this.row(ref));
  }

  async list(filter: VmListFilter): Promise<{ items: Vm[]; nextCursor: string | null; total: number }> {
    let q = this.#db.selectFrom('vms');
    if (filter.state) q = q.where('state', '=', filter.state);
    if (filter.host) {
      const id = [...this.#hostNames].find(([, name]) => name === filter.host)?.[0] ?? filter.host;
      q = q.where('hostId', '=', id);
    }
    if (filter.ownerId) q = q.where('ownerId', '=', filter.ownerId);
    if (filter.namePrefix) {
      q = q.where('name', '>=', filter.namePrefix).where('name', '<', `${filter.namePrefix}\u{10ffff}`);
    }
    const { total } = await q.select((eb) => eb.fn.countAll<number>().as('total')).executeTakeFirstOrThrow();
    let page = q
      .selectAll()
      .orderBy('name')
      .limit(filter.limit + 1);
    if (filter.after) page = page.where('name', '>', filter.after);
    const rows = await page.execute();
    const more = rows.length > filter.limit;
    const items = rows.slice(0, filter.limit).map((r) => this.toWire(r));
    return { items, nextCursor: more ? items[items.length - 1].name : null, total: Number(total) };
  }

  /** The name of the VM one of whose disks is this volume, if any. */
  async volumeOwner(volume: { pool: string; path: string }): Promise<string | null> {
    const rows = await this.#db.selectFrom('vms').select(['name', 'spec']).execute();
    for (const r of rows) {
      const spec = vmSpecOf(r);
      if (spec.disks.some((d) => d.volume.pool === volume.pool && d.volume.path === volume.path))
        return r.name;
    }
    return null;
  }

  async update(id: string, changes: Partial<Omit<VmTable, 'id' | 'createdAt'>>): Promise<Vm> {
    await this.#db
      .updateTable('vms')
      .set({ ...changes, updatedAt: now() })
      .where('id', '=', id)
      .execute();
    return this.#publish(await this.row(id));
  }

  async setState(id: string, s: VmState): Promise<Vm> {
    return this.update(id, { state: s.state, stateReason: s.reason });
  }

  async remove(id: string): Promise<void> {
    await this.#db.deleteFrom('placementGroupMembers').where('vmId', '=', id).execute();
    await this.#db.deleteFrom('vms').where('id', '=', id).execute();
    this.#bus.publish({ type: 'vm.deleted', id });
  }

  /** Applies what a host reported about one VM (or, with null, that it does not run it). */
  async applyReport(hostId: string, id: string, reported: AgentVm | null): Promise<void> {
    const row = await this.#db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row || row.hostId !== hostId) return;
    const next = reconcileVm({ state: row.state as PowerState, reason: row.stateReason }, reported);
    const changes: Partial<VmTable> = {};
    if (next.state !== row.state || next.reason !== row.stateReason) {
      changes.state = next.state;
      changes.stateReason = next.reason;
    }
    if (reported) {
      const guest = JSON.stringify(reported.guest);
      if (guest !== row.guest) changes.guest = guest;
      if (reported.vncPort !== row.vncPort) changes.vncPort = reported.vncPort;
    } else if (row.vncPort !== null) {
      changes.vncPort = null;
    }
    if (Object.keys(changes).length > 0) await this.update(id, changes);
  }

  /** A full report from a host: every VM it runs, so the ones it does not are known too. */
  async applyFullReport(hostId: string, reported: AgentVm[]): Promise<void> {
    const byId = new Map(reported.map((v) => [v.id, v]));
    const rows = await this.#db.selectFrom('vms').select('id').where('hostId', '=', hostId).execute();
    for (const { id } of rows) await this.applyReport(hostId, id, byId.get(id) ?? null);
  }

  async markHostUnreachable(hostId: string, why: string): Promise<void> {
    const rows = await this.#db
      .selectFrom('vms')
      .selectAll()
      .where('hostId', '=', hostId)
      .where('state', 'in', ['running', 'paused'])
      .execute();
    for (const row of rows) {
      await this.setState(
        row.id,
        hostUnreachable({ state: row.state as PowerState, reason: row.stateReason }, why),
      );
    }
  }

  #publish(row: VmTable): Vm {
    const vm = this.toWire(row);
    this.#bus.publish({ type: 'vm', vm });
    return vm;
  }
}
