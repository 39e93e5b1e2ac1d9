/**
 * Placement groups: named sets of VMs that placement keeps on one host (affinity) or on
 * different hosts (anti-affinity). Membership lives in the inventory; placement reads it.
 */
import { TernError } from '../../errors.ts';
import type { PlacementGroup } from '../../wire/cluster.ts';
import { type Db, now } from '../db/database.ts';
import type { VmGroup } from '../placement/model.ts';

export async function listGroups(db: Db): Promise<PlacementGroup[]> {
  const groups = await db.selectFrom('placementGroups').selectAll().orderBy('name').execute();
  const members = await db
    .selectFrom('placementGroupMembers')
    .innerJoin('vms', 'vms.id', 'placementGroupMembers.vmId')
    .select(['placementGroupMembers.groupName', 'vms.name'])
    .orderBy('vms.name')
    .execute();
  return groups.map((g) => ({
    name: g.name,
    kind: g.kind as VmGroup['kind'],
    members: members.filter((m) => m.groupName === g.name).map((m) => m.name),
    createdAt: g.createdAt,
  }));
}

export async function createGroup(db: Db, name: string, kind: VmGroup['kind']): Promise<PlacementGroup> {
  const existing = await db
    .selectFrom('placementGroups')
    .select('name')
    .where('name', '=', name)
    .executeTakeFirst();
  if (existing) throw new TernError('conflict', `placement group ${name} exists`);
  await db.insertInto('placementGroups').values({ name, kind, createdAt: now() }).execute();
  return { name, kind, members: [], createdAt: now() };
}

export async function deleteGroup(db: Db, name: string): Promise<void> {
  await groupsNamed(db, [name]);
  await db.deleteFrom('placementGroupMembers').where('groupName', '=', name).execute();
  await db.deleteFrom('placementGroups').where('name', '=', name).execute();
}

/** The groups by name, refusing names that are not groups. */
export async function groupsNamed(db: Db, names: readonly string[]): Promise<VmGroup[]> {
  if (names.length === 0) return [];
  const rows = await db
    .selectFrom('placementGroups')
    .selectAll()
    .where('name', 'in', [...names])
    .execute();
  const missing = names.filter((n) => !rows.some((r) => r.name === n));
  if (missing.length > 0) {
    throw new TernError('not_found', `placement group ${missing.join(', ')} does not exist`, {
      field: 'groups',
    });
  }
  return rows.map((r) => ({ name: r.name, kind: r.kind as VmGroup['kind'] }));
}

export async function joinGroups(db: Db, vmId: string, groups: readonly VmGroup[]): Promise<void> {
  for (const g of groups) {
    await db
      .insertInto('placementGroupMembers')
      .values({ groupName: g.name, vmId })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

export async function leaveGroups(db: Db, vmId: string): Promise<void> {
  await db.deleteFrom('placementGroupMembers').where('vmId', '=', vmId).execute();
}
