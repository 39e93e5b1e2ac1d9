/**
 * The hosts a manager drives: their agent clients, their reported facts, and the live link
 * to each agent's event stream through which VM changes reach the inventory.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentEvent } from '../../wire/agent.ts';
import type { Host, HostFacts, HostState } from '../../wire/host.ts';
import { type Db, now } from '../db/database.ts';
import type { HostTable } from '../db/schema.ts';
import type { VmStore } from '../vms/store.ts';
import { AgentClient } from './agent-client.ts';

export class HostRegistry {
  readonly #db: Db;
  readonly #vms: VmStore;
  readonly #log: Logger;
  readonly #clients = new Map<string, AgentClient>();
  readonly #following = new Map<string, AbortController>();
  readonly #stop = new AbortController();
  /** Events of one host are applied in order, one at a time. */
  readonly #queues = new Map<string, Promise<void>>();

  constructor(db: Db, vms: VmStore, log: Logger) {
    this.#db = db;
    this.#vms = vms;
    this.#log = log;
  }

  /** Loads known hosts and starts following each of them. */
  async start(): Promise<void> {
    for (const row of await this.#db.selectFrom('hosts').selectAll().execute()) this.#attach(row);
  }

  /** Registers a host by its agent address, or updates the address of a known one. */
  async register(name: string, address: string, token: string): Promise<Host> {
    const client = new AgentClient(address, token);
    const info = await client.info();
    const existing = await this.#db
      .selectFrom('hosts')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    const row: HostTable = {
      id: existing?.id ?? randomUUID(),
      name,
      address,
      token,
      state: existing?.state ?? 'online',
      lastSeen: now(),
      facts: JSON.stringify(info.facts),
      createdAt: existing?.createdAt ?? now(),
    };
    if (existing) {
      this.#clients.delete(existing.id);
      await this.#db.updateTable('hosts').set(row).where('id', '=', row.id).execute();
    } else {
      await this.#db.insertInto('hosts').values(row).execute();
    }
    this.#attach(row);
    return this.get(name);
  }

  client(hostId: string): AgentClient {
    const c = this.#clients.get(hostId);
    if (!c) throw new TernError('not_found', `host ${hostId} is not registered`);
    return c;
  }

  async list(): Promise<Host[]> {
    const rows = await this.#db.selectFrom('hosts').selectAll().orderBy('name').execute();
    const counts = await this.#db
      .selectFrom('vms')
      .select(['hostId', (eb) => eb.fn.countAll<number>().as('n')])
      .groupBy('hostId')
      .execute();
    const byHost = new Map(counts.map((c) => [c.hostId, Number(c.n)]));
    return rows.map((r) => this.#toWire(r, byHost.get(r.id) ?? 0));
  }

  async get(ref: string): Promise<Host> {
    const host = (await this.list()).find((h) => h.name === ref || h.id === ref);
    if (!host) throw new TernError('not_found', `host ${ref} does not exist`);
    return host;
  }

  /** The host new VMs go to. Placement across many hosts arrives with clusters. */
  async pickHost(): Promise<Host> {
    const online = (await this.list()).filter((h) => h.state === 'online');
    if (online.length === 0) throw new TernError('unavailable', 'no host is online to run VMs');
    return online.sort((a, b) => a.vmCount - b.vmCount)[0];
  }

  close(): void {
    this.#stop.abort();
  }

  #toWire(r: HostTable, vmCount: number): Host {
    return {
      id: r.id,
      name: r.name,
      address: r.address,
      state: r.state as HostState,
      lastSeen: r.lastSeen,
      facts: r.facts ? (JSON.parse(r.facts) as HostFacts) : null,
      vmCount,
    };
  }

  #attach(row: HostTable): void {
    // A host registered again (a new address or token) stops following through the old link.
    this.#following.get(row.id)?.abort();
    const following = new AbortController();
    this.#following.set(row.id, following);
    const client = new AgentClient(row.address, row.token);
    this.#clients.set(row.id, client);
    this.#vms.setHostName(row.id, row.name);
    const current = () => this.#clients.get(row.id) === client;
    void client.follow(
      (e) => this.#enqueue(row.id, () => (current() ? this.#onEvent(row.id, client, e) : Promise.resolve())),
      (up, why) =>
        this.#enqueue(row.id, () => (current() ? this.#onConnection(row, up, why) : Promise.resolve())),
      AbortSignal.any([this.#stop.signal, following.signal]),
    );
  }

  #enqueue(hostId: string, work: () => Promise<void>): void {
    const prev = this.#queues.get(hostId) ?? Promise.resolve();
    const next = prev
      .then(work)
      .catch((err) => this.#log.error({ err, host: hostId }, 'applying a host event failed'));
    this.#queues.set(hostId, next);
  }

  async #onEvent(hostId: string, client: AgentClient, e: AgentEvent): Promise<void> {
    switch (e.type) {
      case 'hello':
        await this.#vms.applyFullReport(hostId, await client.listVms());
        break;
      case 'vm':
        await this.#vms.applyReport(hostId, e.vm.id, e.vm);
        break;
      case 'vm.gone':
        await this.#vms.applyReport(hostId, e.id, null);
        break;
      case 'heartbeat':
        await this.#db.updateTable('hosts').set({ lastSeen: e.time }).where('id', '=', hostId).execute();
        break;
    }
  }

  async #onConnection(row: HostTable, up: boolean, why?: string): Promise<void> {
    const current = await this.#db
      .selectFrom('hosts')
      .select('state')
      .where('id', '=', row.id)
      .executeTakeFirst();
    if (!current) return;
    if (up) {
      if (current.state === 'offline') {
        await this.#db
          .updateTable('hosts')
          .set({ state: 'online', lastSeen: now() })
          .where('id', '=', row.id)
          .execute();
        this.#log.info({ host: row.name }, 'host is back online');
      }
      return;
    }
    if (current.state === 'online') {
      await this.#db.updateTable('hosts').set({ state: 'offline' }).where('id', '=', row.id).execute();
      this.#log.warn({ host: row.name, why }, 'host went offline');
    }
    await this.#vms.markHostUnreachable(row.id, why ?? 'connection lost');
  }
}
