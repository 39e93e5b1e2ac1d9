/**
 * The recovery point objective of a replication, watched (pure): how far the replica trails
 * the primary, whether that is within what was promised, and when the next cycle is due.
 *
 * Lag is the age of the newest point the replica holds whole (its view's time, not when it
 * arrived): what a failover now would lose at most. Within the interval it is `ok`; past it,
 * `late` (a cycle is under way or waiting); past twice the interval, `alert`, which raises an
 * alert, because the promise is broken, not merely stretched. A relationship with no point yet
 * is `initial` while its first copy runs, and `alert` once that takes longer than a day.
 */

export type RpoState = 'initial' | 'ok' | 'late' | 'alert';

export interface RpoInput {
  /** The promised interval, ms. */
  interval: number;
  /** When the relationship began (epoch ms). */
  since: number;
  /** When the newest whole point on the replica was taken (epoch ms); null: none yet. */
  newestPoint: number | null;
  /** When the cycle under way started, if one is (epoch ms). */
  cycleStartedAt: number | null;
  now: number;
}

export interface RpoView {
  state: RpoState;
  /** ms; null while no point exists. */
  lag: number | null;
  /** When the next cycle should start (epoch ms); null while one runs. */
  nextCycleAt: number | null;
  why: string;
}

const INITIAL_COPY_GRACE = 24 * 3_600_000;

export function watchRpo(i: RpoInput): RpoView {
  if (!(i.interval > 0)) throw new RangeError('the interval must be positive');
  const running = i.cycleStartedAt !== null;
  if (i.newestPoint === null) {
    const age = i.now - i.since;
    return {
      state: age > INITIAL_COPY_GRACE ? 'alert' : 'initial',
      lag: null,
      nextCycleAt: running ? null : i.now,
      why:
        age > INITIAL_COPY_GRACE
          ? `no recovery point after ${hours(age)}: the initial copy has not finished`
          : 'the initial copy is under way',
    };
  }
  const lag = Math.max(0, i.now - i.newestPoint);
  // Cycles are paced from the newest point, so one that ran late does not push every later one.
  const nextCycleAt = running ? null : Math.max(i.now, i.newestPoint + i.interval);
  if (lag <= i.interval) return { state: 'ok', lag, nextCycleAt, why: 'within the interval' };
  if (lag <= 2 * i.interval)
    return { state: 'late', lag, nextCycleAt, why: running ? 'a cycle is under way' : 'a cycle is due now' };
  return {
    state: 'alert',
    lag,
    nextCycleAt,
    why: `the replica trails by ${seconds(lag)}, more than twice the ${seconds(i.interval)} promised`,
  };
}

const seconds = (ms: number) =>
  ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${Math.round(ms / 60_000)} min`;
const hours = (ms: number) => `${Math.round(ms / 3_600_000)} h`;
