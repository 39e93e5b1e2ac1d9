/**
 * The manager's recovery points against the replica host's (pure). Reality wins: a point the
 * host committed that the manager never recorded (it died between the host's commit and its own
 * write) is recorded; a point the manager recorded that the host no longer holds (merged away
 * by a prune the manager did not see end, or lost with the host's files) is dropped.
 */
import type { ReplicaPoint } from '../../wire/replication.ts';

export interface PointsAgreement {
  /** Host points the manager lacks, oldest first. */
  record: ReplicaPoint[];
  /** Ids the manager holds that the host does not. */
  drop: string[];
}

export function reconcilePoints(
  recorded: readonly { id: string }[],
  held: readonly ReplicaPoint[],
): PointsAgreement {
  const known = new Set(recorded.map((p) => p.id));
  const there = new Set(held.map((p) => p.id));
  return {
    record: held.filter((p) => !known.has(p.id)).sort((a, b) => (a.id < b.id ? -1 : 1)),
    drop: recorded.filter((p) => !there.has(p.id)).map((p) => p.id),
  };
}

/**
 * Why the next cycle cannot build on what the manager believes is the replica's newest point,
 * or null when it can: the replica's host lost it (its files removed, the replica edited).
 */
export function brokenChain(recordedNewest: string | null, held: readonly ReplicaPoint[]): string | null {
  if (recordedNewest === null) return null;
  if (held.some((p) => p.id === recordedNewest)) return null;
  const newest = held.at(-1)?.id ?? null;
  return newest === null
    ? `the replica's host holds none of its recovery points (the newest was ${recordedNewest})`
    : `the replica's host no longer holds recovery point ${recordedNewest} (its newest is ${newest})`;
}
