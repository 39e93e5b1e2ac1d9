/**
 * The hosts a manager drives: their agent clients, their reported facts, and the live link
 * to each agent's event stream through which VM changes reach the inventory.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { IssuedCert } from '../../pki/ca.ts';
import { type Identity, tlsFetch } from '../../pki/identity.ts';
import type { AgentEvent } from '../../wire/agent.ts';
import type { Host, HostFacts, HostState } from '../../wire/host.ts';
import { type Db, now } from '../db/database.ts';
import type { HostTable } from '../db/schema.ts';
import type { EventBus } from '../events/bus.ts';
import { AgentClient } from './agent-client.ts';
import { HostHeartbeats } from './heartbeats.ts';
import { HostReports, type VmReportSink } from './reports.ts';

export class HostRegistry {
  readonly #db: Db;
  readonly #vms: VmReportSink;
  readonly #log: Logger;
  readonly #clients = new Map<string, AgentClient>();
  readonly #following = new Map<string, AbortController>();
  readonly #stop = new AbortController();
  /** Events of one host are applied in order, one at a time. */
  readonly #queues = new Map<string, Promise<void>>();
  /** The certificate each host must present; a removed host has none. */
  readonly #fingerprints = new Map<string, string | null>();
  readonly #identity: Identity;
  readonly #bus: EventBus;
  readonly #onlineWaiters: ((host: Host) => void)[] = [];
  /** Hosts whose event stream is up right now. */
  readonly #connected = new Set<string>();
  /** Hosts with an event that could not be applied, waiting to apply their full report again. */
  readonly #resyncs = new Map<string, NodeJS.Timeout>();
  readonly #reports: HostReports;
  readonly heartbeats: HostHeartbeats;

  constructor(db: Db, vms: VmReportSink, log: Logger, identity: Identity, bus: EventBus) {
    this.#db = db;
    this.#bus = bus;
    this.#vms = vms;
    this.#log = log;
    this.#identity = identity;
    this.#reports = new HostReports(db, vms, log);
    this.heartbeats = new HostHeartbeats(db, log);
  }

  /** Loads known hosts and starts following each of them. */
  async start(): Promise<void> {
    for (const row of await this.#db.selectFrom('hosts').selectAll().execute()) {
      if (row.certFingerprint) this.#attach(row);
      else
        this.#log.warn(
          { host: row.name },
          `host ${row.name} has no certificate; join it again (tern host add ${row.name})`,
        );
    }
  }

  /**
   * Records a host that joined with a certificate issued for it. It counts as offline until
   * its agent answers; from then on the manager follows it, trusting only that certificate.
   */
  async enrol(name: string, address: string, cert: IssuedCert): Promise<Host> {
    const earlier = await this.#db
      .selectFrom('hosts')
      .selectAll()
      .where('name', '=', name)
      .executeTakeFirst();
    if (earlier?.certFingerprint) throw new TernError('conflict', `host ${name} is already in the cluster`);
    const row: HostTable = {
      id: earlier?.id ?? randomUUID(),
      name,
      address,
      state: 'offline',
      lastSeen: null,
      facts: null,
      createdAt: earlier?.createdAt ?? now(),
      certFingerprint: cert.fingerprint,
      certSerial: cert.serial,
      certExpiresAt: cert.notAfter,
      joinedAt: now(),
      haSlot: earlier?.haSlot ?? (await this.#freeHaSlot()),
      haAcknowledged: null,
    };
    if (earlier) await this.#db.updateTable('hosts').set(row).where('id', '=', row.id).execute();
    else await this.#db.insertInto('hosts').values(row).execute();
    await this.#publish(row.id);
    this.#attach(row);
    return this.get(name);
  }

  /**
   * Takes a host out of the cluster: its certificate is revoked, so neither its agent nor
   * anyone holding its key is trusted again. A host with VMs must be emptied first.
   */
  async remove(ref: string): Promise<void> {
    const host = await this.get(ref);
    const vms = await this.#db.selectFrom('vms').select('name').where('hostId', '=', host.id).execute();
    if (vms.length > 0) {
      throw new TernError(
        'conflict',
        `host ${host.name} still has ${vms.length} VM(s): ${vms
          .slice(0, 10)
          .map((v) => v.name)
          .join(', ')}; migrate or delete them first`,
        { vms: vms.map((v) => v.name) },
      );
    }
    const row = await this.#db
      .selectFrom('hosts')
      .selectAll()
      .where('id', '=', host.id)
      .executeTakeFirstOrThrow();
    await this.#db.transaction().execute(async (tx) => {
      if (row.certSerial && row.certFingerprint) {
        await tx
          .insertInto('revokedCertificates')
          .values({
            serial: row.certSerial,
            fingerprint: row.certFingerprint,
            hostName: row.name,
            revokedAt: now(),
          })
          .onConflict((oc) => oc.doNothing())
          .execute();
      }
      await tx.deleteFrom('hosts').where('id', '=', row.id).execute();
    });
    this.#following.get(row.id)?.abort();
    this.#following.delete(row.id);
    this.#clients.delete(row.id);
    this.#fingerprints.delete(row.id);
    this.#log.info({ host: row.name }, 'host removed; its certificate is revoked');
  }

  /** The lowest statefile slot no host holds. */
  async #freeHaSlot(): Promise<number> {
    const taken = new Set(
      (await this.#db.selectFrom('hosts').select('haSlot').execute())
        .map((r) => r.haSlot)
        .filter((n) => n !== null),
    );
    let slot = 0;
    while (taken.has(slot)) slot++;
    return slot;
  }

  /** The host a client certificate belongs to; refuses revoked and unknown certificates. */
  async byCertificate(fingerprint: string): Promise<Host> {
    const revoked = await this.#db
      .selectFrom('revokedCertificates')
      .select('hostName')
      .where('fingerprint', '=', fingerprint)
      .executeTakeFirst();
    if (revoked) {
      throw new TernError(
        'forbidden',
        `this certificate was revoked when host ${revoked.hostName} was removed`,
      );
    }
    const row = await this.#db
      .selectFrom('hosts')
      .select('name')
      .where('certFingerprint', '=', fingerprint)
      .executeTakeFirst();
    if (!row) throw new TernError('forbidden', 'this certificate belongs to no host of the cluster');
    return this.get(row.name);
  }

  /** Maintenance on and off; online and offline follow the link to the agent. */
  async setState(hostId: string, state: HostState): Promise<void> {
    await this.#db.updateTable('hosts').set({ state }).where('id', '=', hostId).execute();
    await this.#publish(hostId);
  }

  async #publish(hostId: string): Promise<void> {
    const host = await this.get(hostId).catch(() => null);
    if (host) this.#bus.publish({ type: 'host', host });
  }

  /** Leaves maintenance: online if the agent's link is up, offline until it is. */
  async endMaintenance(hostId: string): Promise<Host> {
    await this.setState(hostId, this.#connected.has(hostId) ? 'online' : 'offline');
    return this.get(hostId);
  }

  /** The first host that is (or comes) online. */
  async whenOnline(): Promise<Host> {
    const online = (await this.list()).find((h) => h.state === 'online');
    if (online) return online;
    return new Promise((resolve) => this.#onlineWaiters.push(resolve));
  }

  /** Called (not awaited) each time a host's full report has been applied. */
  onReported(listener: (hostId: string) => void): void {
    this.#reports.onReported(listener);
  }

  /**
   * Resolves once the host's agent is connected and its full report applied, so the inventory
   * tells what runs there; throws `unavailable` when that takes longer than `timeoutMs`.
   */
  async whenReported(
    hostId: string,
    timeoutMs: number,
    signal?: AbortSignal,
    waiting?: (host: string) => Promise<void>,
  ): Promise<AgentClient> {
    await this.#reports.wait(hostId, timeoutMs, async () => (await this.get(hostId)).name, signal, waiting);
    return this.client(hostId);
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
    // One host, not the list: every heartbeat of every host asks, so this must not grow with
    // the cluster (each host's facts are parsed, each host's VMs counted).
    const row = await this.#db
      .selectFrom('hosts')
      .selectAll()
      .where((eb) => eb.or([eb('name', '=', ref), eb('id', '=', ref)]))
      .orderBy('name')
      .executeTakeFirst();
    if (!row) throw new TernError('not_found', `host ${ref} does not exist`);
    const count = await this.#db
      .selectFrom('vms')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('hostId', '=', row.id)
      .executeTakeFirst();
    return this.#toWire(row, Number(count?.n ?? 0));
  }

  /** The host new VMs go to. Placement across many hosts arrives with clusters. */
  /** The online host with the fewest VMs; of those that `fits` (`lacking` says what the others lack). */
  async pickHost(fits?: (h: Host) => boolean, lacking?: string): Promise<Host> {
    const online = (await this.list()).filter((h) => h.state === 'online' && (fits?.(h) ?? true));
    if (online.length === 0)
      throw new TernError('no_capacity', `no host is online to run VMs${lacking ? ` ${lacking}` : ''}`);
    return online.sort((a, b) => a.vmCount - b.vmCount)[0];
  }

  close(): void {
    this.#stop.abort();
    for (const t of this.#resyncs.values()) clearTimeout(t);
    this.#resyncs.clear();
  }

  /**
   * Applies what is known of a host (of every host without one) again: whether its link is up,
   * and what its agent reports it runs (or, when the link is down, that its VMs are unknown).
   * A change that could not be recorded (a full disk) is recorded now.
   */
  resync(hostId?: string): void {
    for (const id of hostId ? [hostId] : [...this.#clients.keys()]) {
      clearTimeout(this.#resyncs.get(id));
      this.#resyncs.delete(id);
      const client = this.#clients.get(id);
      if (!client) continue;
      this.#enqueue(id, async () => {
        const row = await this.#db.selectFrom('hosts').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row || this.#clients.get(id) !== client) return;
        const up = this.#connected.has(id);
        await this.#onConnection(row, up, 'connection lost');
        if (up) await this.#reports.apply(id, client);
      });
    }
  }

  /** A host event could not be applied: its full report is applied again a little later. */
  #resyncLater(hostId: string): void {
    if (this.#resyncs.has(hostId) || this.#stop.signal.aborted) return;
    const timer = setTimeout(() => this.resync(hostId), 5000);
    timer.unref();
    this.#resyncs.set(hostId, timer);
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
      certificate:
        r.certFingerprint && r.certExpiresAt
          ? { fingerprint: r.certFingerprint, expiresAt: r.certExpiresAt }
          : null,
      joinedAt: r.joinedAt,
    };
  }

  #attach(row: HostTable): void {
    // A host registered again (a new address or token) stops following through the old link.
    this.#following.get(row.id)?.abort();
    const following = new AbortController();
    this.#following.set(row.id, following);
    this.#fingerprints.set(row.id, row.certFingerprint);
    const transport = tlsFetch(this.#identity, { pin: () => this.#fingerprints.get(row.id) ?? null });
    following.signal.addEventListener('abort', () => void transport.close(), { once: true });
    const client = new AgentClient(row.address, transport);
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
    const next = prev.then(work).catch((err) => {
      if ((err as TernError).code !== 'manager_disk_full')
        this.#log.error({ err, host: hostId }, 'applying a host event failed');
      this.#resyncLater(hostId);
    });
    this.#queues.set(hostId, next);
  }

  async #onEvent(hostId: string, client: AgentClient, e: AgentEvent): Promise<void> {
    switch (e.type) {
      case 'hello':
        await this.#reports.apply(hostId, client);
        break;
      case 'vm':
        await this.#vms.applyReport(hostId, e.vm.id, e.vm);
        break;
      case 'vm.gone':
        await this.#vms.applyReport(hostId, e.id, null);
        break;
      case 'heartbeat':
        await this.heartbeats.seen(hostId, e.time);
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
      // Facts change (an agent upgrade, a new pool): each new link brings them up to date,
      // before the host counts as online, so an online host always has facts.
      try {
        const info = await this.client(row.id).info();
        await this.#db
          .updateTable('hosts')
          .set({ facts: JSON.stringify(info.facts) })
          .where('id', '=', row.id)
          .execute();
      } catch (err) {
        this.#log.warn({ host: row.name, err: (err as Error).message }, 'could not refresh host facts');
      }
      this.#connected.add(row.id);
    } else {
      this.#connected.delete(row.id);
      this.#reports.forget(row.id);
    }
    if (up) {
      if (current.state === 'offline') {
        await this.#db
          .updateTable('hosts')
          .set({ state: 'online', lastSeen: now() })
          .where('id', '=', row.id)
          .execute();
        this.#log.info({ host: row.name }, 'host is online');
      }
      await this.#publish(row.id);
      if (this.#onlineWaiters.length > 0) {
        const host = await this.get(row.id);
        for (const w of this.#onlineWaiters.splice(0)) w(host);
      }
      return;
    }
    if (current.state === 'online') {
      await this.#db.updateTable('hosts').set({ state: 'offline' }).where('id', '=', row.id).execute();
      this.#log.warn({ host: row.name, why }, 'host went offline');
      await this.#publish(row.id);
    }
    await this.#vms.markHostUnreachable(row.id, why ?? 'connection lost');
  }
}
