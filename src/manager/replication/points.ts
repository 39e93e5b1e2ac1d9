/**
 * Which recovery points a replica keeps (pure). The newest point always; of the older ones, at
 * most `keep`: the newest point of each of the last `keep` periods of `period` ms before it
 * that have one, where a period holding an application-consistent point keeps that one instead
 * (a point a database can start from cleanly is worth more than a newer crash-consistent one
 * of the same hour). Everything else goes. Each kept point says why it is kept.
 */

export interface RecoveryPoint {
  id: string;
  /** When the point's view of the primary's disks was taken (epoch ms). */
  takenAt: number;
  appConsistent: boolean;
}

export type KeptBecause = 'latest' | 'period' | 'period, application-consistent';

export interface PointMark<P extends RecoveryPoint> {
  point: P;
  kept: KeptBecause | null;
}

export const MAX_OLDER_POINTS = 24;

export function markPoints<P extends RecoveryPoint>(
  points: readonly P[],
  keep: number,
  period: number,
): PointMark<P>[] {
  if (!Number.isInteger(keep) || keep < 0 || keep > MAX_OLDER_POINTS)
    throw new RangeError(`keep must be a whole number from 0 to ${MAX_OLDER_POINTS}`);
  if (!(period > 0)) throw new RangeError('period must be positive');
  const sorted = [...points].sort((a, b) => b.takenAt - a.takenAt || (a.id < b.id ? 1 : -1));
  const marks = new Map<string, KeptBecause>();
  const latest = sorted[0];
  if (!latest) return [];
  marks.set(latest.id, 'latest');
  // Periods counted back from the newest point: period k holds (latest - (k+1)·period, latest - k·period].
  const chosen = new Map<number, P>();
  for (const p of sorted.slice(1)) {
    const k = Math.floor((latest.takenAt - p.takenAt) / period);
    if (k >= keep) continue;
    const held = chosen.get(k);
    if (!held || (p.appConsistent && !held.appConsistent)) chosen.set(k, p);
  }
  for (const p of chosen.values())
    marks.set(p.id, p.appConsistent ? 'period, application-consistent' : 'period');
  return sorted.map((point) => ({ point, kept: marks.get(point.id) ?? null }));
}
