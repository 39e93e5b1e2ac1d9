/**
 * Which backups of one VM in one datastore to keep, as Proxmox Backup Server defines it (its
 * `compute_prune_info`): backups newest first; each rule in the order keep-last, hourly, daily,
 * weekly (ISO weeks), monthly, yearly keeps the newest backup of each of its N most recent
 * periods that hold one, skipping periods a previous rule already kept a backup in (they do not
 * count against N). A protected backup is always kept and counts for no rule. No rule at all
 * keeps everything: an empty policy never prunes by accident. Pure; periods in the manager's
 * time zone (calendar.ts), as the schedules that made the backups.
 */
import { TernError } from '../../errors.ts';
import type { Retention } from '../../wire/api/backup-jobs.ts';
import { fieldsOf, isoWeek, type Zone } from './calendar.ts';

export const retentionRules = [
  'keep-last',
  'keep-hourly',
  'keep-daily',
  'keep-weekly',
  'keep-monthly',
  'keep-yearly',
] as const;
export type RetentionRule = (typeof retentionRules)[number];

export interface RetainedBackup {
  id: string;
  createdAt: Date;
  /** Kept whatever the rules say (and counted by none), e.g. a backup an operator pinned. */
  protected?: boolean;
}

export interface RetentionMark<B extends RetainedBackup> {
  backup: B;
  keep: boolean;
  /** What kept it; null when it goes. */
  reason: RetentionRule | 'protected' | 'keep-all' | null;
}

/** The greatest count a rule takes: more is a typo, not a policy. */
export const maxRetentionCount = 100_000;

/** Checks a policy from the outside (API, job definitions): counts are whole numbers in range. */
export function checkRetention(r: Record<string, unknown>): Retention {
  const out: Retention = {};
  for (const [rule, n] of Object.entries(r)) {
    if (!(retentionRules as readonly string[]).includes(rule))
      throw new TernError(
        'invalid_request',
        `unknown retention rule "${rule}" (one of ${retentionRules.join(', ')})`,
      );
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > maxRetentionCount)
      throw new TernError('invalid_request', `${rule} must be a whole number from 0 to ${maxRetentionCount}`);
    if (n > 0) out[rule as RetentionRule] = n;
  }
  return out;
}

/** The period a backup falls in for each rule: two backups in the same period compete for it. */
function periodOf(rule: RetentionRule, b: RetainedBackup, zone: Zone): string {
  const f = fieldsOf(b.createdAt, zone);
  switch (rule) {
    case 'keep-last':
      return b.id;
    case 'keep-hourly':
      return `${f.year}/${f.month}/${f.day}/${f.hour}`;
    case 'keep-daily':
      return `${f.year}/${f.month}/${f.day}`;
    case 'keep-weekly': {
      const w = isoWeek(f);
      return `${w.year}/W${w.week}`;
    }
    case 'keep-monthly':
      return `${f.year}/${f.month}`;
    case 'keep-yearly':
      return `${f.year}`;
  }
}

/** Every backup with whether it stays and why, newest first. */
export function applyRetention<B extends RetainedBackup>(
  backups: readonly B[],
  retention: Retention,
  zone: Zone = 'local',
): RetentionMark<B>[] {
  const list = [...backups].sort(
    (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
  );
  const active = retentionRules.filter((r) => (retention[r] ?? 0) > 0);
  if (active.length === 0) return list.map((backup) => ({ backup, keep: true, reason: 'keep-all' }));

  // Decided by an earlier rule: kept (with the rule) or already passed over (null).
  const decided = new Map<B, RetentionRule | null>();
  for (const rule of active) {
    const keep = retention[rule] ?? 0;
    const periodsKept = new Set<string>();
    for (const b of list) if (decided.get(b)) periodsKept.add(periodOf(rule, b, zone));
    const periodsNew = new Set<string>();
    for (const b of list) {
      if (decided.has(b) || b.protected) continue;
      const period = periodOf(rule, b, zone);
      if (periodsKept.has(period)) continue;
      if (periodsNew.has(period)) {
        decided.set(b, null); // an older backup of a period this rule already keeps
        continue;
      }
      if (periodsNew.size >= keep) break;
      periodsNew.add(period);
      decided.set(b, rule);
    }
  }
  return list.map((backup) => {
    if (backup.protected) return { backup, keep: true, reason: 'protected' };
    const reason = decided.get(backup) ?? null;
    return { backup, keep: reason !== null, reason };
  });
}
