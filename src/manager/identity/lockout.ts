/**
 * When a password may be tried again. Failures count per name AND source address: five in ten
 * minutes lock that name from that address, for a minute, then two, four… up to an hour while
 * the guessing goes on. Many addresses guessing one name lock it from every address except
 * those it logged in from lately, so a stranger can slow a real user down but never lock the
 * user out of the user's own address. Kept in memory, bounded; pure apart from the clock.
 */

export interface LockoutPolicy {
  /** Failures of one name from one address, within `windowMs`, that lock it there. */
  maxFailures: number;
  /** Failures of one name from all addresses together that lock it from strangers. */
  maxNameFailures: number;
  windowMs: number;
  /** The first lock; each further lock while the guessing goes on lasts twice as long. */
  lockMs: number;
  maxLockMs: number;
  /** How long an address the user logged in from stays trusted. */
  trustMs: number;
}

export const defaultLockoutPolicy: LockoutPolicy = {
  maxFailures: 5,
  maxNameFailures: 20,
  windowMs: 10 * 60_000,
  lockMs: 60_000,
  maxLockMs: 60 * 60_000,
  trustMs: 30 * 24 * 3600_000,
};

interface Failures {
  /** Times of recent failures (within the window). */
  times: number[];
  lockedUntil: number;
  /** Locks so far without a success in between: the next lasts lockMs × 2^strikes. */
  strikes: number;
  /** Attempts being checked: parallel guesses count before their answers. */
  pending: number;
}

const maxEntries = 10_000;
/** Strikes are forgotten after a quiet day. */
const quietMs = 24 * 3600_000;

export class Lockout {
  readonly #policy: LockoutPolicy;
  readonly #now: () => number;
  readonly #pairs = new Map<string, Failures>();
  readonly #names = new Map<string, Failures>();
  /** name → address → last successful login. */
  readonly #trusted = new Map<string, Map<string, number>>();

  constructor(policy: LockoutPolicy = defaultLockoutPolicy, now: () => number = Date.now) {
    this.#policy = policy;
    this.#now = now;
  }

  /** Milliseconds until `name` may be tried from `address`; 0: now. */
  wait(name: string, address: string): number {
    const t = this.#now();
    const pair = this.#pairs.get(pairKey(name, address));
    let until = pair ? this.#lockedUntil(pair, this.#policy.maxFailures, t) : 0;
    if (!this.#isTrusted(name, address, t)) {
      const all = this.#names.get(name);
      if (all) until = Math.max(until, this.#lockedUntil(all, this.#policy.maxNameFailures, t));
    }
    return Math.max(0, until - t);
  }

  /** An attempt is being checked; `end` says how it went. */
  begin(name: string, address: string): void {
    for (const f of this.#entries(name, address)) f.pending++;
  }

  /** `error`: the check itself failed (a directory that is down is nobody's guess). */
  end(name: string, address: string, outcome: 'ok' | 'wrong' | 'error'): void {
    const t = this.#now();
    const [pair, all] = this.#entries(name, address);
    pair.pending--;
    all.pending--;
    if (outcome === 'error') return;
    if (outcome === 'ok') {
      this.#pairs.delete(pairKey(name, address));
      const trusted = this.#trusted.get(name) ?? new Map<string, number>();
      trusted.set(address, t);
      // A user's few recent addresses; the oldest goes first.
      if (trusted.size > 16) trusted.delete(trusted.keys().next().value as string);
      this.#trusted.set(name, trusted);
      if (all.pending === 0 && all.times.length === 0) this.#names.delete(name);
      return;
    }
    this.#fail(pair, this.#policy.maxFailures, t);
    this.#fail(all, this.#policy.maxNameFailures, t);
    this.#prune(t);
  }

  #entries(name: string, address: string): [Failures, Failures] {
    const get = (m: Map<string, Failures>, k: string) => {
      let f = m.get(k);
      if (!f) {
        f = { times: [], lockedUntil: 0, strikes: 0, pending: 0 };
        m.set(k, f);
      }
      return f;
    };
    return [get(this.#pairs, pairKey(name, address)), get(this.#names, name)];
  }

  #lockedUntil(f: Failures, max: number, t: number): number {
    if (f.lockedUntil > t) return f.lockedUntil;
    const recent = f.times.filter((x) => t - x < this.#policy.windowMs).length;
    // Guesses still being checked would reach the limit: wait for their answers.
    return recent + f.pending >= max ? t + 1000 : 0;
  }

  #fail(f: Failures, max: number, t: number): void {
    if (f.strikes > 0 && t - f.lockedUntil > quietMs) f.strikes = 0;
    f.times = [...f.times.filter((x) => t - x < this.#policy.windowMs), t];
    if (f.times.length >= max) {
      f.lockedUntil = t + Math.min(this.#policy.maxLockMs, this.#policy.lockMs * 2 ** f.strikes);
      f.strikes++;
      f.times = [];
    }
  }

  #isTrusted(name: string, address: string, t: number): boolean {
    const at = this.#trusted.get(name)?.get(address);
    return at !== undefined && t - at < this.#policy.trustMs;
  }

  /** Bounded: entries that neither lock nor count anything go when the maps grow large. */
  #prune(t: number): void {
    for (const m of [this.#pairs, this.#names]) {
      if (m.size <= maxEntries) continue;
      for (const [k, f] of m) {
        const quiet =
          f.pending === 0 && f.lockedUntil < t && f.times.every((x) => t - x >= this.#policy.windowMs);
        if (quiet && (f.strikes === 0 || t - f.lockedUntil > quietMs)) m.delete(k);
      }
    }
    if (this.#trusted.size > maxEntries) this.#trusted.delete(this.#trusted.keys().next().value as string);
  }
}

const pairKey = (name: string, address: string) => `${name}\u0000${address}`;
