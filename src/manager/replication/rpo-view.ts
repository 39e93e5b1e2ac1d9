/**
 * A relationship's RPO as the API shows it and the scheduler reads it (pure): rpo.ts's watch
 * over the row, except that a paused or failed-over relationship promises nothing (no cycle
 * due, no alert).
 */
import type { ReplicationRpo } from '../../wire/api/replication.ts';
import type { ReplicationTable } from '../db/schema.ts';
import { watchRpo } from './rpo.ts';

export function rpoOf(
  row: Pick<ReplicationTable, 'state' | 'intervalS' | 'createdAt'>,
  newestPoint: number | null,
  cycleStartedAt: number | null,
  now: number,
): ReplicationRpo {
  const lagSeconds = newestPoint === null ? null : Math.max(0, Math.round((now - newestPoint) / 1000));
  if (row.state === 'paused' || row.state === 'failed-over')
    return {
      state: 'paused',
      lagSeconds,
      nextCycleAt: null,
      why: row.state === 'paused' ? 'paused: no cycle starts' : 'failed over: the replica runs',
    };
  const v = watchRpo({
    interval: row.intervalS * 1000,
    since: Date.parse(row.createdAt),
    newestPoint,
    cycleStartedAt,
    now,
  });
  return {
    state: v.state,
    lagSeconds: v.lag === null ? null : Math.round(v.lag / 1000),
    nextCycleAt: v.nextCycleAt === null ? null : new Date(v.nextCycleAt).toISOString(),
    why: v.why,
  };
}
