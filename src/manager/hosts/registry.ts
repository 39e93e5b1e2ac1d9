/**
 * The hosts a manager drives: their agent clients, their reported facts, and the live link
 * to each agent's event stream through which VM changes reach the inventory.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { IssuedCert } from '../../pki/ca.ts';
import { type Identity, tlsFetch } from '../../pki/identity.ts';
import type { AgentEvent, AgentVm } from '../../wire/agent.ts';
import type { Host, HostFacts, HostState } from '../../wire/host.ts';
import { type Db, now } from '../db/database.ts';
import { bestEffort } from '../db/disk-space.ts';
import type { HostTable } from '../db/schema.ts';
import type { EventBus } from '../events/bus.ts';
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
  /** The certificate each host must present; a removed host has none. */
  readonly #fingerprints = new Map<string, string | null>();
  readonly #identity: Identity;
  readonly #bus: EventBus;
  readonly #onlineWaiters: ((host: Host) => void)[] = [];
  /** Monotonic arrival time of each host's last heartbeat on the cluster endpoint. */
  readonly #heard = new Map<string, number>();
  /** Hosts whose event stream is up right now. */
  readonly #connected = new Set<string>();
  /** Hosts whose link is up and whose full report the inventory holds: what recovery waits for. */
  readonly #reported = new Set<string>();
  readonly #reportWaiters = new Map<string, Set<() => void>>();
  /** Hosts with an event that could not be applied, waiting to apply their full report again. */
  readonly #resyncs = new Map<string, NodeJS.Timeout>();
  readonly #reportListeners: ((hostId: string) => void)[] = [];

  constructor(db: Db, vms: VmStore, log: Logger, identity: Identity, bus: EventBus) {
    this.#db = db;
    this.#bus = bus;
    this.#vms = vms;
    this.#log = log;
    this.#identity = identity;
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

  /**
   * A host's own heartbeat over the cluster endpoint (the event stream has its own). Hearing
   * the host is what counts; `lastSeen` is bookkeeping that a full disk must not turn into a
   * failed heartbeat.
   */
  async heartbeat(hostId: string): Promise<void> {
    this.#heard.set(hostId, performance.now());
    await bestEffort(
      this.#db.updateTable('hosts').set({ lastSeen: now() }).where('id', '=', hostId).execute(),
      this.#log,
      'when a host was last seen',
    );
  }

  /** When (this manager's monotonic clock) the host's own heartbeat last arrived; null: not yet. */
  heardAt(hostId: string): number | null {
    return this.#heard.get(hostId) ?? null;
  }

  /** The first host that is (or comes) online. */
  async whenOnline(): Promise<Host> {
    const online = (await this.list()).find((h) => h.state === 'online');
    if (online) return online;
    return new Promise((resolve) => this.#onlineWaiters.push(resolve));
  }

  /** Called (not awaited) each time a host's full report has been applied. */
  onReported(listener: (hostId: string) => void): void {
    this.#reportListeners.push(listener);
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
    if (!this.#reported.has(hostId)) {
      const name = (await this.get(hostId)).name;
      await waiting?.(name);
      const waiters = this.#reportWaiters.get(hostId) ?? new Set();
      this.#reportWaiters.set(hostId, waiters);
      await new Promise<void>((resolve, reject) => {
        const done = (fn: () => void) => {
          clearTimeout(timer);
          waiters.delete(ready);
          signal?.removeEventListener('abort', aborted);
          fn();
        };
        const ready = () => done(resolve);
        const aborted = () => done(() => reject(signal?.reason));
        const timer = setTimeout(
          () =>
            done(() =>
              reject(
                new TernError(
                  'unavailable',
                  `host ${name} did not connect within ${Math.round(timeoutMs / 1000)} s`,
                ),
              ),
            ),
          timeoutMs,
        );
        waiters.add(ready);
        // The report may have arrived while the name was looked up.
        if (this.#reported.has(hostId)) ready();
        else if (signal?.aborted) aborted();
        else signal?.addEventListener('abort', aborted, { once: true });
      });
    }
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
  async pickHost(): Promise<Host> {
    const online = (await this.list()).filter((h) => h.state === 'online');
    if (online.length === 0) throw new TernError('no_capacity', 'no host is online to run VMs');
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
        if (up) await this.#fullReport(id, client);
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
        await this.#fullReport(hostId, client);
        break;
      case 'vm':
        await this.#vms.applyReport(hostId, e.vm.id, e.vm);
        break;
      case 'vm.gone':
        await this.#vms.applyReport(hostId, e.id, null);
        break;
      case 'heartbeat':
        await bestEffort(
          this.#db.updateTable('hosts').set({ lastSeen: e.time }).where('id', '=', hostId).execute(),
          this.#log,
          'when a host was last seen',
        );
        break;
    }
  }

  async #fullReport(hostId: string, client: AgentClient): Promise<void> {
    const reported = await client.listVms();
    await this.#vms.applyFullReport(hostId, reported);
    await this.#forgetStrays(hostId, client, reported);
    this.#reported.add(hostId);
    for (const ready of [...(this.#reportWaiters.get(hostId) ?? [])]) ready();
    for (const listener of this.#reportListeners) listener(hostId);
  }

  /**
   * A host that comes back may still hold records of VMs that live elsewhere now (restarted
   * by HA, migrated, deleted while it was away). Stopped or crashed ones are forgotten there, so
   * they neither show nor block the VM coming back to this host; a running one is reported, not
   * killed: the inventory may be about to name this host (a migration in flight).
   */
  async #forgetStrays(hostId: string, client: AgentClient, reported: AgentVm[]): Promise<void> {
    if (reported.length === 0) return;
    const owners = new Map(
      (
        await this.#db
          .selectFrom('vms')
          .select(['id', 'hostId'])
          .where(
            'id',
            'in',
            reported.map((v) => v.id),
          )
          .execute()
      ).map((r) => [r.id, r.hostId]),
    );
    for (const vm of reported) {
      if (owners.get(vm.id) === hostId) continue;
      if (vm.state === 'crashed' || vm.state === 'stopped') {
        await client
          .forgetVm(vm.id)
          .catch((err: Error) =>
            this.#log.warn({ vm: vm.id, err: err.message }, 'could not forget a stray VM'),
          );
        this.#log.info({ vm: vm.id, host: hostId }, 'forgot a stopped copy of a VM that lives elsewhere');
      } else {
        this.#log.warn(
          { vm: vm.id, host: hostId, state: vm.state },
          'a host reports a VM the inventory places elsewhere',
        );
      }
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
      this.#reported.delete(row.id);
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
