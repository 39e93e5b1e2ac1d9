/**
 * The manager's HA watch: twice a second it reads the statefile (through any host that sees it),
 * notes whose lease moved and whose heartbeat arrived, asks the detector what state each host
 * is in, and starts the failover of a host declared failed. Every time here is this manager's
 * own monotonic clock; the hosts' clocks are never compared with it.
 */
import { TernError } from '../../errors.ts';
import type { SlotState } from '../../ha/statefile.ts';
import type { Logger } from '../../log.ts';
import type { HaHostStatus } from '../../wire/ha.ts';
import type { AlertStore } from '../alerts/store.ts';
import type { TaskEngine, TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from '../vms/deps.ts';
import { parseAcknowledged, protectedByHost, statefilePath } from './assignment.ts';
import { detect, type HostDetection, type HostHealth } from './detector.ts';
import type { FailoverParams } from './failover.ts';

const tickMs = 500;
/**
 * A read through a host that does not answer this fast is abandoned for the next host: a host
 * cut off from the network must not hold up the watch of every other.
 */
const readTimeoutMs = 1500;
/** Hosts asked for the statefile in one round at most. */
const readersPerRound = 3;

/** The alert each state raises (and clears when the host leaves it), with its message. */
const stateAlerts: Partial<
  Record<HostHealth, (host: string) => { severity: 'critical' | 'warning'; message: string }>
> = {
  failed: (host) => ({
    severity: 'critical',
    message: `host ${host} failed: neither its heartbeat nor its HA lease for longer than it takes to fence; its protected VMs restart elsewhere`,
  }),
  isolated: (host) => ({
    severity: 'warning',
    message: `host ${host} does not reach the manager but renews its HA lease: its VMs stay; check its management network`,
  }),
  'storage-lost': (host) => ({
    severity: 'warning',
    message: `host ${host} cannot renew its HA lease but reaches the manager: its VMs stay; check its path to the statefile pool`,
  }),
};

export type HaMonitorDeps = VmDeps & { alerts: AlertStore };

export class HaMonitor {
  readonly #deps: HaMonitorDeps;
  readonly #tasks: TaskEngine;
  readonly #log: Logger;
  /** The failover kind (registered in task-kinds.ts with every other), given at start. */
  #failover: TaskKind<FailoverParams> | null = null;
  /**
   * When this watch began: HA turned on (or its statefile moved) here or before this manager
   * started. Nothing before it counts, so silence from before HA was on fails no host.
   */
  #watchingSince = performance.now();
  /** What the watch is on: the statefile pool, null while HA is off. */
  #watching: string | null = null;
  readonly #leases = new Map<string, { counter: number; okAt: number; timeoutS: number }>();
  #statefileReadAt: number | null = null;
  /** The host whose last read succeeded: asked first next time. */
  #reader: string | null = null;
  #round = 0;
  #status: HostDetection[] = [];
  /** Each host's state as last published (events and alerts follow its changes). */
  readonly #published = new Map<string, HostHealth>();
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;
  /** Hosts whose failover was started by this manager, so it is started once. */
  readonly #failingOver = new Set<string>();

  constructor(deps: HaMonitorDeps, tasks: TaskEngine, log: Logger) {
    this.#deps = deps;
    this.#tasks = tasks;
    this.#log = log;
  }

  start(failover: TaskKind<FailoverParams>): void {
    this.#failover = failover;
    const loop = async () => {
      try {
        await this.tick();
      } catch (err) {
        this.#log.error({ err }, 'HA watch failed a round');
      }
      if (!this.#stopped) this.#timer = setTimeout(() => void loop(), tickMs);
    };
    this.#timer = setTimeout(() => void loop(), tickMs);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
  }

  /** Whether the last round found `hostId` healthy (a failed host back, to its failover). */
  isHealthy(hostId: string): boolean {
    return this.#status.some((d) => d.hostId === hostId && d.state === 'healthy');
  }

  /**
   * What the last round found `hostId` to be; null while HA is off or the host is not watched.
   * `failed` means fenced: silent past the time it takes a host to fence itself.
   */
  healthOf(hostId: string): HostHealth | null {
    return this.#status.find((d) => d.hostId === hostId)?.state ?? null;
  }

  /** What the detector said of each host in the last round, by host name. */
  async statusOfHosts(): Promise<HaHostStatus[]> {
    const hosts = await this.#hostRows();
    const placed = await protectedByHost(this.#deps.db);
    return this.#status.map((d) =>
      this.#statusOf(
        d,
        hosts.find((h) => h.id === d.hostId),
        placed,
      ),
    );
  }

  #hostRows() {
    return this.#deps.db
      .selectFrom('hosts')
      .select(['id', 'name', 'state', 'haSlot', 'haAcknowledged'])
      .execute();
  }

  #statusOf(
    d: HostDetection,
    host: { name: string; haAcknowledged: string | null } | undefined,
    placed: Map<string, string[]>,
  ): HaHostStatus {
    const confirmed = parseAcknowledged(host?.haAcknowledged ?? null);
    return {
      host: host?.name ?? d.hostId,
      state: d.state,
      networkSilentMs: Math.round(d.networkSilentMs),
      leaseSilentMs: Math.round(d.leaseSilentMs),
      leaseSeen: this.#leases.has(d.hostId),
      protecting: confirmed.size,
      unconfirmed: (placed.get(d.hostId) ?? []).filter((id) => !confirmed.has(id)).length,
    };
  }

  /** Publishes each change of a host's state as an event, and raises or clears its alerts. */
  async #publish(
    hosts: readonly { id: string; name: string; haAcknowledged: string | null }[],
  ): Promise<void> {
    const seen = new Set<string>();
    let placed: Map<string, string[]> | null = null;
    for (const d of this.#status) {
      seen.add(d.hostId);
      if (this.#published.get(d.hostId) === d.state) continue;
      this.#published.set(d.hostId, d.state);
      const host = hosts.find((h) => h.id === d.hostId);
      placed ??= await protectedByHost(this.#deps.db);
      this.#deps.bus.publish({ type: 'ha', status: this.#statusOf(d, host, placed) });
      await this.#alerts(d.hostId, host?.name ?? d.hostId, d.state);
    }
    // Hosts no longer watched (HA off, host removed) keep no HA alert.
    for (const hostId of [...this.#published.keys()]) {
      if (seen.has(hostId)) continue;
      this.#published.delete(hostId);
      await this.#alerts(hostId, hostId, null);
    }
  }

  async #alerts(hostId: string, name: string, state: HostHealth | null): Promise<void> {
    for (const [s, make] of Object.entries(stateAlerts)) {
      const id = `host:${hostId}:ha-${s}`;
      // A suspect host keeps the alert it had: it is not yet either way.
      if (state === s) await this.#deps.alerts.raise({ id, object: `host:${hostId}`, ...make(name) });
      else if (state !== 'suspect') await this.#deps.alerts.clear(id);
    }
  }

  async tick(): Promise<void> {
    const settings = await this.#deps.placer.settings.ha();
    const watching = settings.enabled ? settings.statefilePool : null;
    if (watching !== this.#watching) {
      this.#watching = watching;
      this.#watchingSince = performance.now();
      this.#leases.clear();
      this.#statefileReadAt = null;
    }
    if (!watching) {
      this.#status = [];
      await this.#publish([]);
      return;
    }
    const hosts = await this.#hostRows();
    await this.#readLeases(watching, hosts);
    const now = performance.now();
    this.#status = detect({
      nowMs: now,
      timeoutS: settings.timeoutS,
      watchingSinceMs: this.#watchingSince,
      statefileReadAtMs: this.#statefileReadAt,
      hosts: hosts.map((h) => ({
        hostId: h.id,
        networkOkAtMs: this.#deps.hosts.heartbeats.heardAt(h.id),
        leaseOkAtMs: this.#leases.get(h.id)?.okAt ?? null,
        timeoutS: this.#leases.get(h.id)?.timeoutS,
      })),
    });
    await this.#publish(hosts);
    for (const d of this.#status) {
      if (d.state !== 'failed' || this.#failingOver.has(d.hostId)) continue;
      const host = hosts.find((h) => h.id === d.hostId)!;
      this.#log.warn(
        { host: host.name },
        'host failed: no heartbeat and no lease; restarting its protected VMs',
      );
      if (!this.#failover) throw new Error('the HA watch ran a round before it was started');
      try {
        await this.#tasks.submit<FailoverParams>(this.#failover, { hostId: d.hostId }, [`ha:${d.hostId}`]);
        this.#failingOver.add(d.hostId);
      } catch (err) {
        // Already running (a resumed task holds the lock): that one sees it through.
        if (!(err instanceof TernError && err.code === 'conflict')) throw err;
        this.#failingOver.add(d.hostId);
      }
    }
    // A host that is healthy again may fail again later.
    for (const d of this.#status) if (d.state === 'healthy') this.#failingOver.delete(d.hostId);
  }

  /** One read of the statefile through the first host that answers. */
  async #readLeases(
    pool: string,
    hosts: { id: string; name: string; state: string; haSlot: number | null }[],
  ): Promise<void> {
    const slots = Math.max(1, ...hosts.map((h) => (h.haSlot ?? 0) + 1));
    // The host that answered last, then a few others, in turns: a round must not wait on
    // every host of a large cluster whose storage path is down.
    const online = hosts.filter((h) => h.state === 'online');
    const turn = this.#round++ % Math.max(1, online.length);
    const readers = [
      ...online.filter((h) => h.id === this.#reader),
      ...online.slice(turn),
      ...online.slice(0, turn),
    ]
      .filter((h, i, all) => all.indexOf(h) === i)
      .slice(0, readersPerRound);
    for (const reader of readers) {
      const startedAt = performance.now();
      let read: SlotState[];
      try {
        read = await this.#deps.hosts
          .client(reader.id)
          .readStatefile({ pool, path: statefilePath }, slots, readTimeoutMs);
      } catch {
        continue;
      }
      this.#reader = reader.id;
      const doneAt = performance.now();
      for (const h of hosts) {
        const s = read[h.haSlot ?? -1];
        // A slot names the host that writes it (by the name its heartbeat reply gave it).
        if (s?.state !== 'valid' || s.record.hostId !== h.name) continue;
        const seen = this.#leases.get(h.id);
        if (!seen || s.record.counter !== seen.counter) {
          this.#leases.set(h.id, { counter: s.record.counter, okAt: doneAt, timeoutS: s.record.timeoutS });
        }
      }
      this.#statefileReadAt = startedAt;
      return;
    }
  }
}
