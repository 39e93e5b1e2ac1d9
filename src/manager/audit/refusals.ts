/**
 * Refusals of requests without credentials, tallied per source address and name (a failed
 * login's user, or `anonymous`) per minute: the first is written at once, as it is; the rest of
 * that minute become one record with their count and the actions asked for. An address that
 * tries more than a few names in a minute has the others tallied together, with the names
 * tried. A flood of anonymous requests (2,000 in two seconds) grows the log by two records, not
 * two thousand, yet nothing goes unrecorded.
 */
import type { AuditEntry } from './entry.ts';

interface Tally {
  /** When the address's minute began (its first refusal, written at once). */
  start: number;
  count: number;
  actions: Map<string, number>;
  names: Set<string>;
  first: AuditEntry;
  timer: NodeJS.Timeout | null;
}

/** Tallies kept at once; beyond it every tally is written out and begun again. */
const maxTallies = 10_000;
/** Names an address has tallied apart in a minute; more are tallied together. */
const maxNamesPerAddress = 10;

export class RefusalTally {
  readonly #append: (e: AuditEntry) => Promise<void>;
  readonly #onError: (err: Error) => void;
  readonly #windowMs: number;
  readonly #now: () => number;
  /** By address and name. */
  readonly #tallies = new Map<string, Tally>();
  /** How many names each address has tallied apart. */
  readonly #names = new Map<string, number>();

  constructor(
    append: (e: AuditEntry) => Promise<void>,
    onError: (err: Error) => void,
    windowMs = 60_000,
    now: () => number = Date.now,
  ) {
    this.#append = append;
    this.#onError = onError;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  async refused(entry: AuditEntry): Promise<void> {
    let e = entry;
    const address = e.sourceIp ?? 'unknown';
    const t = this.#now();
    let key = `${address}\u0000${e.actor}`;
    let tally = this.#tallies.get(key);
    if (tally && t - tally.start >= this.#windowMs) {
      await this.#flush(key);
      tally = undefined;
    }
    let folded: string | null = null;
    if (!tally && e.actor !== 'anonymous' && (this.#names.get(address) ?? 0) >= maxNamesPerAddress) {
      folded = e.actor;
      e = { ...e, actor: 'anonymous', detail: `${e.detail ?? 'refused'} (user ${folded})` };
      key = `${address}\u0000anonymous`;
      tally = this.#tallies.get(key);
    }
    if (tally && t - tally.start < this.#windowMs) {
      tally.count++;
      tally.actions.set(e.action, (tally.actions.get(e.action) ?? 0) + 1);
      if (folded !== null && tally.names.size < 20) tally.names.add(folded);
      tally.timer ??= setTimeout(
        () => this.#flush(key).catch(this.#onError),
        tally.start + this.#windowMs - t,
      ).unref();
      return;
    }
    if (tally) await this.#flush(key);
    if (this.#tallies.size >= maxTallies) await this.close();
    this.#tallies.set(key, {
      start: t,
      count: 0,
      actions: new Map(),
      names: new Set(folded === null ? [] : [folded]),
      first: e,
      timer: null,
    });
    if (e.actor !== 'anonymous') this.#names.set(address, (this.#names.get(address) ?? 0) + 1);
    await this.#append(e);
  }

  /** Writes every tally out (at shutdown). */
  async close(): Promise<void> {
    await Promise.all([...this.#tallies.keys()].map((a) => this.#flush(a)));
  }

  async #flush(key: string): Promise<void> {
    const tally = this.#tallies.get(key);
    if (!tally) return;
    this.#tallies.delete(key);
    if (tally.timer) clearTimeout(tally.timer);
    const address = tally.first.sourceIp ?? 'unknown';
    if (tally.first.actor !== 'anonymous') {
      const left = (this.#names.get(address) ?? 1) - 1;
      if (left > 0) this.#names.set(address, left);
      else this.#names.delete(address);
    }
    if (tally.count === 0) return;
    const actions = [...tally.actions].sort((a, b) => b[1] - a[1]);
    const names = [...tally.names];
    await this.#append({
      ...tally.first,
      action: actions[0][0],
      object: actions.length === 1 ? tally.first.object : '',
      detail:
        `${tally.count} more refused without credentials in the minute since ${new Date(tally.start).toISOString()}: ` +
        actions.map(([a, n]) => `${a} ×${n}`).join(', ') +
        (names.length > 0 ? `; other names tried: ${names.join(', ')}` : ''),
    });
  }
}
