/**
 * How often a replication cycles and freezes the guest (pure). The promise is 30 s,
 * 5 min or 15 min (Hyper-V Replica's three); any whole duration from 30 s to 24 h is taken,
 * because a site link may only afford hourly cycles. Nothing below 30 s: a cycle takes a
 * point-in-time view of every disk, and doing that faster than the guest can settle would
 * trade the guest's latency for a promise the hosts cannot keep.
 */
import { TernError } from '../../errors.ts';
import { durationText } from '../../wire/api/replication.ts';

export const MIN_INTERVAL_S = 30;
export const MAX_INTERVAL_S = 24 * 3600;
/** Application-consistent points at most a week apart (points older than 24 periods go anyway). */
export const MAX_APP_CONSISTENT_S = 7 * 24 * 3600;
/** The period of the older points kept when no application-consistent period is set. */
export const DEFAULT_POINT_PERIOD_S = 3600;

const units: Record<string, number> = { s: 1, m: 60, h: 3600 };

/** `30s`, `5m`, `4h` → seconds; `0` → 0. */
export function parseDuration(text: string, what: string): number {
  if (text === '0') return 0;
  const m = /^([0-9]{1,6})(s|m|h)$/.exec(text);
  if (!m)
    throw new TernError(
      'invalid_request',
      `${what} ${JSON.stringify(text)} is not a duration like 30s, 5m or 4h`,
    );
  return Number(m[1]) * (units[m[2]] ?? 1);
}

/** The interval between cycles, in seconds, checked. */
export function intervalOf(text: string): number {
  const s = parseDuration(text, 'the interval');
  if (s < MIN_INTERVAL_S || s > MAX_INTERVAL_S)
    throw new TernError(
      'invalid_request',
      `the interval ${text} is out of range: from 30s to 24h (30s, 5m and 15m are the usual choices)`,
    );
  return s;
}

/** The application-consistent period, in seconds (0: never), checked against the interval. */
export function appConsistentPeriodOf(text: string, intervalS: number): number {
  const s = parseDuration(text, 'the application-consistent period');
  if (s === 0) return 0;
  if (s < intervalS)
    throw new TernError(
      'invalid_request',
      `application-consistent points every ${text} would come more often than the cycles (every ${durationText(intervalS)})`,
    );
  if (s > MAX_APP_CONSISTENT_S)
    throw new TernError(
      'invalid_request',
      `application-consistent points at least once a week, not every ${text}`,
    );
  return s;
}

/** The period of the older points kept (points.ts): the application-consistent one, else an hour. */
export function pointPeriodMs(appConsistentEveryS: number): number {
  return (appConsistentEveryS > 0 ? appConsistentEveryS : DEFAULT_POINT_PERIOD_S) * 1000;
}

/**
 * Whether the cycle starting at `now` freezes the guest: when no application-consistent point
 * was taken within the period (the first one included).
 */
export function freezeDue(
  appConsistentEveryS: number,
  lastAppConsistentAt: number | null,
  now: number,
): boolean {
  if (appConsistentEveryS <= 0) return false;
  return lastAppConsistentAt === null || now - lastAppConsistentAt >= appConsistentEveryS * 1000;
}
