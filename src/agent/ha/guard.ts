/**
 * The agent's HA loop. Applies the duties the manager assigns in its heartbeat replies (kept in
 * `<state>/ha/assignment.json`, so an agent restarted without a manager still knows them),
 * renews this host's storage lease, feeds the watchdog with the protected VMs' QEMU pids, and
 * fences when fencing.ts says so: kills the protected VMs itself (the watchdog is the
 * backstop for an agent too stuck to do it), marks its slot fenced, and refuses commands until
 * both the lease and a manager are back.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { Value } from 'typebox/value';
import { readSlots, writeSlot } from '../../ha/statefile.ts';
import type { Logger } from '../../log.ts';
import { HaAssignment } from '../../wire/ha.ts';
import type { HypervisorDriver } from '../driver.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { decideFencing, type FenceState } from './fencing.ts';
import { type ProtectedProcess, WatchdogLink } from './watchdog.ts';

export interface GuardOptions {
  stateDir: string;
  pools: Pools;
  driver: HypervisorDriver;
  log: Logger;
  /** How often the agent sends its network heartbeat (to tell a late answer from a lost one). */
  heartbeatMs: number;
  /** The watchdog process; null where there is no QEMU to protect (sim hosts fence in-process). */
  watchdog?: WatchdogLink | null;
  /**
   * How often the loop runs and feeds the watchdog (default 250 ms): how late, at most, the
   * agent notices its fence deadline, which the manager's safety margin must cover.
   */
  tickMs?: number;
}

interface Duties {
  host: string;
  assignment: HaAssignment;
}

export interface GuardEvents {
  state: [FenceState | 'disabled'];
  fenced: [boolean];
  /** The lease was renewed: its counter, and whether the slot says fenced. */
  renewed: [number, boolean];
  /** The watchdog was fed: time left before it acts, and how many VMs it protects. */
  fed: [number, number];
}

export class HaGuard {
  readonly events = new EventEmitter<GuardEvents>();
  readonly #o: GuardOptions;
  readonly #file: string;
  readonly #tickMs: number;
  readonly #watchdog: WatchdogLink | null;
  #duties: Duties | null = null;
  /** When the beat whose answer gave the current duties was sent. */
  #dutiesSentAt = Number.NEGATIVE_INFINITY;
  #timer: NodeJS.Timeout | null = null;
  #ticking = false;
  /** Monotonic times of the last renewal (when the write began) and the last manager answer. */
  #leaseOkAt = Number.NEGATIVE_INFINITY;
  #managerOkAt = Number.NEGATIVE_INFINITY;
  /** Stands in for both before anything was heard, e.g. right after a restart; see #enforce. */
  #assumedOkAt = performance.now();
  #enforcing = false;
  #disarmed = false;
  #watchdogChecked = false;
  #renewing = false;
  #lastRenewAt = Number.NEGATIVE_INFINITY;
  #counter: number | null = null;
  #renewError = '';
  #state: FenceState | 'disabled' = 'disabled';
  #fencedAt: number | null = null;

  constructor(o: GuardOptions) {
    this.#o = o;
    this.#file = path.join(o.stateDir, 'ha', 'assignment.json');
    this.#tickMs = o.tickMs ?? 250;
    this.#watchdog = o.watchdog === undefined ? new WatchdogLink(path.join(o.stateDir, 'ha')) : o.watchdog;
  }

  /** True while this host is fenced: the agent refuses commands that change anything. */
  get fenced(): boolean {
    return this.#fencedAt !== null;
  }

  /**
   * The generation of the HA assignment this host enforces (kept on disk, applied on the next
   * round), reported in every heartbeat: the manager restarts elsewhere only the VMs the host
   * confirmed it protects, since only those does its fence kill. Null: no duties.
   */
  get generation(): number | null {
    return this.#duties?.assignment.generation ?? null;
  }

  get state(): FenceState | 'disabled' {
    return this.#state;
  }

  /** Loads the duties kept from the last manager answer, and starts the loop. */
  start(): void {
    try {
      const kept = JSON.parse(fs.readFileSync(this.#file, 'utf8')) as Duties;
      if (typeof kept?.host === 'string' && Value.Check(HaAssignment, kept.assignment)) {
        this.#duties = kept;
        this.#o.log.info(
          { generation: kept.assignment.generation, enabled: kept.assignment.enabled },
          'HA duties loaded from the last manager answer',
        );
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#o.log.error({ err }, `ignoring unreadable ${this.#file}`);
      }
    }
    this.#timer = setInterval(() => void this.#tick(), this.#tickMs);
    void this.#tick();
  }

  /**
   * A manager answered the heartbeat sent at `sentAtMs` (performance.now()); `reply` is its
   * body, whose `ha` (if present and valid) is this host's current assignment. The manager is
   * credited from the sending: it heard the host then or later, never earlier.
   */
  heartbeatAnswered(reply: unknown, sentAtMs = performance.now()): void {
    this.#managerOkAt = Math.max(this.#managerOkAt, sentAtMs);
    const r = reply as { host?: unknown; ha?: unknown } | null;
    if (!r || r.ha === undefined) return;
    // Beats overlap when the manager is slow: an answer to an older beat than the one whose
    // duties apply is older news, and must not bring back the duties before them.
    if (sentAtMs < this.#dutiesSentAt) return;
    this.#dutiesSentAt = sentAtMs;
    if (typeof r.host !== 'string' || !Value.Check(HaAssignment, r.ha)) {
      this.#o.log.error('the manager sent an HA assignment this agent cannot read; keeping the previous one');
      return;
    }
    this.#assign({ host: r.host, assignment: r.ha });
  }

  /** Stops the loop. The watchdog stays armed: an agent that stops is not renewing its lease. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#watchdog?.close();
  }

  #assign(d: Duties): void {
    if (JSON.stringify(d) === JSON.stringify(this.#duties)) return;
    const before = this.#duties?.assignment;
    this.#duties = d;
    const a = d.assignment;
    this.#o.log.info(
      {
        generation: a.generation,
        enabled: a.enabled,
        timeoutS: a.timeoutS,
        protectedVms: a.protectedVms.length,
      },
      'HA assignment from the manager',
    );
    if (
      before?.statefile?.pool !== a.statefile?.pool ||
      before?.statefile?.path !== a.statefile?.path ||
      before?.slot !== a.slot
    ) {
      this.#counter = null;
    }
    try {
      fs.mkdirSync(path.dirname(this.#file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${this.#file}.tmp`, JSON.stringify(d));
      fs.renameSync(`${this.#file}.tmp`, this.#file);
    } catch (err) {
      this.#o.log.error({ err }, `cannot keep the HA assignment in ${this.#file}`);
    }
    void this.#tick();
  }

  async #tick(): Promise<void> {
    if (this.#ticking || !this.#timer) return;
    this.#ticking = true;
    try {
      const a = this.#duties?.assignment;
      if (!a?.enabled || !a.statefile) await this.#standDown();
      else await this.#enforce(a);
    } catch (err) {
      this.#o.log.error({ err }, 'HA loop failed');
    } finally {
      this.#ticking = false;
    }
  }

  async #standDown(): Promise<void> {
    // Checked once after start too: a previous agent may have left the watchdog armed.
    if (this.#disarmed) return;
    this.#enforcing = false;
    if (this.#fencedAt !== null) {
      this.#fencedAt = null;
      this.#o.log.warn('HA is disabled for this host: leaving fenced mode');
      this.events.emit('fenced', false);
    }
    try {
      if (this.#watchdog && (this.#watchdog.connected || (await this.#connectWatchdog(false)))) {
        await this.#watchdog.disarm();
      }
      this.#disarmed = true;
      if (this.#state !== 'disabled') {
        this.#o.log.info('HA is disabled for this host: lease no longer renewed, watchdog disarmed');
        this.#state = 'disabled';
        this.events.emit('state', 'disabled');
      }
    } catch (err) {
      this.#o.log.error({ err }, 'cannot disarm the HA watchdog; trying again');
    }
  }

  async #enforce(a: HaAssignment): Promise<void> {
    const now = performance.now();
    this.#disarmed = false;
    if (!this.#enforcing) {
      // HA just became this host's duty: its timeout counts from now, not from the last time
      // it was on (an old renewal must not make a fresh assignment fence at once).
      this.#enforcing = true;
      this.#assumedOkAt = Math.max(this.#assumedOkAt, now);
    }
    if (!this.#watchdogChecked && this.#watchdog) {
      // A restarted agent must not outlive the deadline its predecessor promised the watchdog:
      // the manager counts from the last heartbeat it heard, not from this restart.
      const s = await this.#connectWatchdog(false);
      this.#watchdogChecked = true;
      if (s?.armed && s.remainingMs !== null) {
        this.#assumedOkAt = Math.min(this.#assumedOkAt, now + s.remainingMs - a.timeoutS * 1000);
      }
    }
    this.#renew(a, now);

    const renewMs = (a.timeoutS * 1000) / 5;
    const d = decideFencing({
      nowMs: now,
      leaseOkAtMs: Math.max(this.#leaseOkAt, this.#assumedOkAt),
      managerOkAtMs: Math.max(this.#managerOkAt, this.#assumedOkAt),
      timeoutS: a.timeoutS,
      silentAfterMs: 2 * Math.max(renewMs, this.#o.heartbeatMs) + this.#tickMs,
    });
    if (d.state !== this.#state) {
      const msg: Record<FenceState, string> = {
        ok: 'HA: lease renews and the manager answers',
        isolated: 'HA: the manager is unreachable but the lease renews; the VMs stay',
        'storage-lost': 'HA: the lease cannot be renewed but the manager answers; the VMs stay',
        'both-lost': 'HA: neither the lease nor the manager; this host fences itself unless one comes back',
        fence: 'HA: neither the lease nor the manager for the whole HA timeout: fencing',
      };
      const fields = {
        timeoutS: a.timeoutS,
        remainingMs: Math.round(d.remainingMs),
        renewError: this.#renewError || undefined,
      };
      if (d.state === 'ok') this.#o.log.info(fields, msg[d.state]);
      else if (d.state === 'fence') this.#o.log.error(fields, msg[d.state]);
      else this.#o.log.warn(fields, msg[d.state]);
      this.#state = d.state;
      this.events.emit('state', d.state);
    }

    if (d.state === 'fence' && this.#fencedAt === null) this.#fence(a, now);
    if (this.#fencedAt !== null) {
      if (this.#leaseOkAt > this.#fencedAt && this.#managerOkAt > this.#fencedAt) {
        this.#fencedAt = null;
        this.#o.log.warn('HA: the lease renews and the manager answers again: leaving fenced mode');
        this.events.emit('fenced', false);
      } else {
        return; // Not fed: the watchdog's deadline is this one, and it acts as the backstop.
      }
    }
    if (d.feedWatchdog) await this.#feed(a, d.remainingMs);
  }

  #fence(a: HaAssignment, now: number): void {
    this.#fencedAt = now;
    const targets = this.#protectedVms(a);
    this.#o.log.error(
      { vms: targets.map((v) => v.id) },
      'this host fenced itself: killing its protected VMs and refusing commands until the lease and a manager are back',
    );
    this.events.emit('fenced', true);
    for (const vm of targets) {
      // Not awaited: the loop goes on (and renews, to notice recovery) even if a kill hangs.
      this.#o.driver.act(vm.id, 'kill').then(
        () => this.#o.log.warn({ vm: vm.id, pid: vm.pid }, 'fenced: killed protected VM'),
        (err) => this.#o.log.error({ vm: vm.id, err }, 'fenced: cannot kill protected VM; the watchdog will'),
      );
    }
    this.#lastRenewAt = Number.NEGATIVE_INFINITY; // mark the slot fenced at once
    this.#renew(a, now);
  }

  #protectedVms(a: HaAssignment): ProtectedProcess[] {
    const ids = new Set(a.protectedVms);
    return this.#o.driver
      .list()
      .filter((v) => ids.has(v.id) && v.pid !== null)
      .map((v) => ({ id: v.id, pid: v.pid! }));
  }

  /** One write in flight at most: a hung storage path must not pile up blocked writes. */
  #renew(a: HaAssignment, now: number): void {
    if (this.#renewing || now - this.#lastRenewAt < (a.timeoutS * 1000) / 5 || !a.statefile) return;
    this.#renewing = true;
    this.#lastRenewAt = now;
    const host = this.#duties!.host;
    const fenced = this.#fencedAt !== null;
    const statefile = a.statefile;
    void (async () => {
      try {
        const file = resolveVolume(this.#o.pools, statefile);
        // The first renewal makes the statefile's directory inside the pool, never the pool
        // itself: a pool that is gone is storage that is gone, and the renewal must fail.
        const root = path.resolve(this.#o.pools[statefile.pool]);
        // Never a synchronous call here: a hung storage path would freeze the whole agent.
        if (path.dirname(file) !== root && (await fs.promises.stat(root).catch(() => null))) {
          await fs.promises.mkdir(path.dirname(file), { recursive: true });
        }
        if (this.#counter === null) {
          // Continue the slot's counter, so it only ever grows, across agent restarts too.
          const s = (await readSlots(file, a.slot + 1).catch(() => []))[a.slot];
          this.#counter = s?.state === 'valid' && s.record.hostId === host ? s.record.counter : 0;
        }
        const counter = this.#counter + 1;
        await writeSlot(file, a.slot, {
          hostId: host,
          counter,
          wallTimeMs: Date.now(),
          timeoutS: a.timeoutS,
          fenced,
        });
        this.#counter = counter;
        // The write began at `now`; counting from then never overstates how fresh the lease is.
        this.#leaseOkAt = Math.max(this.#leaseOkAt, now);
        if (this.#renewError) this.#o.log.info('HA lease renews again');
        this.#renewError = '';
        this.events.emit('renewed', counter, fenced);
      } catch (err) {
        const why = (err as Error).message;
        if (why !== this.#renewError) this.#o.log.error({ why }, 'HA lease renewal failed');
        this.#renewError = why;
      } finally {
        this.#renewing = false;
      }
    })();
  }

  async #feed(a: HaAssignment, remainingMs: number): Promise<void> {
    const w = this.#watchdog;
    if (!w) return;
    const vms = this.#protectedVms(a);
    try {
      // Started on first use: no protected VM runs here, no watchdog process.
      if (!w.connected && (vms.length === 0 || !(await this.#connectWatchdog(true)))) return;
      await w.feed(remainingMs, vms);
      this.events.emit('fed', remainingMs, vms.length);
    } catch (err) {
      this.#o.log.error({ err }, 'cannot feed the HA watchdog; reconnecting on the next round');
      w.close();
    }
  }

  async #connectWatchdog(start: boolean) {
    const w = this.#watchdog!;
    try {
      return await w.connect(start);
    } catch (err) {
      if (start) this.#o.log.error({ err }, 'cannot reach the HA watchdog');
      return null;
    }
  }
}
