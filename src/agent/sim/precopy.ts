/**
 * The pre-copy model of a live migration (pure): passes over the guest's memory at the link's
 * bandwidth while the guest dirties pages, auto-converge throttling it as QEMU does, until what
 * is left fits the downtime limit or the time runs out.
 */

const MiB = 1024 * 1024;

export interface PrecopyParams {
  memoryBytes: number;
  /** Bytes per simulated second the link carries for this migration. */
  bandwidthBps: number;
  /** Bytes per simulated second the guest dirties when not throttled. */
  dirtyBps: number;
  downtimeLimitMs: number;
  autoConverge: boolean;
  timeoutMs: number;
}

export type PrecopyOutcome =
  | { converged: true; downtimeMs: number }
  | { converged: false; reason: string }
  | null;

export interface PrecopyState {
  /** Pre-copy passes completed. */
  round: number;
  elapsedMs: number;
  transferredBytes: number;
  /** Dirty memory still to send. */
  remainingBytes: number;
  /** Share of guest CPU time taken away by auto-converge (QEMU's cpu-throttle). */
  throttle: number;
  outcome: PrecopyOutcome;
}

/** QEMU's auto-converge defaults: throttle 20 % first, 10 % more per pass, at most 99 %. */
export const autoConvergeThrottle = { initial: 0.2, increment: 0.1, max: 0.99 } as const;

export function startPrecopy(memoryBytes: number): PrecopyState {
  return {
    round: 0,
    elapsedMs: 0,
    transferredBytes: 0,
    remainingBytes: memoryBytes,
    throttle: 0,
    outcome: null,
  };
}

function notConverging(p: PrecopyParams, throttle: number): string {
  return (
    `did not converge within ${Math.round(p.timeoutMs / 1000)} s: the guest dirties ` +
    `${(p.dirtyBps / MiB).toFixed(0)} MiB/s (${Math.round(throttle * 100)} % throttled), ` +
    `the link carries ${(p.bandwidthBps / MiB).toFixed(0)} MiB/s`
  );
}

/**
 * One step: the stop-and-copy when what is left can be sent within the downtime limit (never
 * before the first full pass), otherwise another pass over the memory dirtied meanwhile.
 */
export function precopyRound(s: PrecopyState, p: PrecopyParams): PrecopyState {
  if (s.outcome) return s;
  const sendMs = (bytes: number) => (bytes / p.bandwidthBps) * 1000;
  if (s.round > 0 && sendMs(s.remainingBytes) <= p.downtimeLimitMs) {
    const downtimeMs = sendMs(s.remainingBytes);
    return {
      ...s,
      elapsedMs: s.elapsedMs + downtimeMs,
      transferredBytes: s.transferredBytes + s.remainingBytes,
      remainingBytes: 0,
      outcome: { converged: true, downtimeMs },
    };
  }
  const durationMs = sendMs(s.remainingBytes);
  if (s.elapsedMs + durationMs > p.timeoutMs) {
    const leftMs = Math.max(0, p.timeoutMs - s.elapsedMs);
    return {
      ...s,
      elapsedMs: p.timeoutMs,
      transferredBytes: s.transferredBytes + Math.floor((leftMs / 1000) * p.bandwidthBps),
      outcome: { converged: false, reason: notConverging(p, s.throttle) },
    };
  }
  const dirtied = Math.min(p.memoryBytes, p.dirtyBps * (1 - s.throttle) * (durationMs / 1000));
  let throttle = s.throttle;
  // QEMU throttles when the guest dirtied more than half of what a pass sent.
  if (p.autoConverge && s.round > 0 && dirtied > s.remainingBytes / 2) {
    const t = autoConvergeThrottle;
    throttle = throttle === 0 ? t.initial : Math.min(t.max, throttle + t.increment);
  }
  return {
    round: s.round + 1,
    elapsedMs: s.elapsedMs + durationMs,
    transferredBytes: s.transferredBytes + s.remainingBytes,
    remainingBytes: Math.round(dirtied),
    throttle,
    outcome: null,
  };
}

/**
 * The whole migration at a constant dirty rate. A migration whose dirty memory no longer
 * shrinks with the throttle at its end cannot converge: it fails at the timeout at once.
 */
export function planPrecopy(p: PrecopyParams): PrecopyState {
  let s = startPrecopy(p.memoryBytes);
  while (!s.outcome) {
    const next = precopyRound(s, p);
    const throttled = !p.autoConverge || next.throttle >= autoConvergeThrottle.max;
    if (!next.outcome && s.round > 0 && next.remainingBytes >= s.remainingBytes && throttled) {
      const leftMs = Math.max(0, p.timeoutMs - next.elapsedMs);
      return {
        ...next,
        elapsedMs: Math.max(p.timeoutMs, next.elapsedMs),
        transferredBytes: next.transferredBytes + Math.floor((leftMs / 1000) * p.bandwidthBps),
        outcome: { converged: false, reason: notConverging(p, next.throttle) },
      };
    }
    s = next;
  }
  return s;
}
