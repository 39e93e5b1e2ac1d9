/**
 * What each host must do for HA, sent back in the answer to its heartbeat: the timeout, its
 * slot in the statefile, and which of its VMs are protected (their QEMU is killed if the host
 * fences itself).
 */
import { crc32 } from 'node:zlib';
import type { HaAssignment, VmHaPolicy } from '../../wire/ha.ts';
import type { SettingsStore } from '../cluster/settings.ts';
import type { Db } from '../db/database.ts';

/** Where the statefile lives inside its shared pool. */
export const statefilePath = 'ha/statefile';

/** A VM counts as protected when its policy restarts it (for sure or with room to spare). */
export function isProtected(policy: VmHaPolicy | null): boolean {
  return policy !== null && policy.restart !== 'none';
}

export async function haAssignment(db: Db, settings: SettingsStore, hostId: string): Promise<HaAssignment> {
  const ha = await settings.ha();
  const host = await db.selectFrom('hosts').select('haSlot').where('id', '=', hostId).executeTakeFirst();
  const vms = await db.selectFrom('vms').select(['id', 'haPolicy']).where('hostId', '=', hostId).execute();
  const protectedVms = vms
    .filter((v) => isProtected(v.haPolicy ? (JSON.parse(v.haPolicy) as VmHaPolicy) : null))
    .map((v) => v.id)
    .sort();
  const duties = {
    enabled: ha.enabled && ha.statefilePool !== null,
    timeoutS: ha.timeoutS,
    statefile: ha.statefilePool ? { pool: ha.statefilePool, path: statefilePath } : null,
    slot: host?.haSlot ?? 0,
    protectedVms,
  };
  // The same duties give the same generation, so the agent applies each change exactly once.
  return { ...duties, generation: crc32(JSON.stringify(duties)) };
}

/**
 * The host reported enforcing assignment `generation`: if that is the current one, its
 * protected VMs are the ones its fence kills, recorded for the failover (written on change only).
 */
export async function acknowledgeAssignment(
  db: Db,
  hostId: string,
  current: HaAssignment,
  generation: number | null,
) {
  if (generation !== current.generation) return;
  const acknowledged = JSON.stringify(current.enabled ? current.protectedVms : []);
  await db
    .updateTable('hosts')
    .set({ haAcknowledged: acknowledged })
    .where('id', '=', hostId)
    .where((eb) => eb.or([eb('haAcknowledged', 'is', null), eb('haAcknowledged', '!=', acknowledged)]))
    .execute();
}

/** The VM ids of a host's `haAcknowledged` column; unreadable counts as none. */
export function parseAcknowledged(column: string | null): Set<string> {
  try {
    const ids = JSON.parse(column ?? '[]') as unknown;
    return new Set(Array.isArray(ids) ? ids.filter((x): x is string => typeof x === 'string') : []);
  } catch {
    return new Set();
  }
}

/** The protected VMs of every host, as the inventory places them: what each host should confirm. */
export async function protectedByHost(db: Db): Promise<Map<string, string[]>> {
  const rows = await db
    .selectFrom('vms')
    .select(['id', 'hostId', 'haPolicy'])
    .where('haPolicy', 'is not', null)
    .execute();
  const out = new Map<string, string[]>();
  for (const r of rows) {
    if (!r.hostId || !isProtected(JSON.parse(r.haPolicy!) as VmHaPolicy)) continue;
    const ids = out.get(r.hostId);
    if (ids) ids.push(r.id);
    else out.set(r.hostId, [r.id]);
  }
  return out;
}

/** The VMs a host last confirmed it protects. */
export async function acknowledgedVms(db: Db, hostId: string): Promise<Set<string>> {
  const row = await db
    .selectFrom('hosts')
    .select('haAcknowledged')
    .where('id', '=', hostId)
    .executeTakeFirst();
  return parseAcknowledged(row?.haAcknowledged ?? null);
}
