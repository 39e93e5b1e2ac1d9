/**
 * What a backup job backs up: named VMs, the members of placement groups, the VMs of projects,
 * read at each run (a VM that joined a project since is in; one that left is out). Pure over
 * one read of the inventory. What the selection names but is gone (a deleted VM, a removed
 * group or project) is reported, never skipped quietly: the run fails on it, so a job that
 * backs up less than it says is never a success.
 */

export interface BackupSelection {
  /** VM ids (named when the job was written; ids, so a rename keeps them). */
  vms: string[];
  /** Placement group names. */
  groups: string[];
  /** Project names. */
  projects: string[];
}

export interface SelectableVm {
  id: string;
  name: string;
  project: string | null;
  /** Names of the placement groups it belongs to. */
  groups: readonly string[];
}

export interface Selected<V extends SelectableVm> {
  /** Each VM once, by name. */
  vms: V[];
  /** What the selection names that no longer exists, said for a person. */
  missing: string[];
}

export function isEmptySelection(s: BackupSelection): boolean {
  return s.vms.length === 0 && s.groups.length === 0 && s.projects.length === 0;
}

export function selectVms<V extends SelectableVm>(
  selection: BackupSelection,
  inventory: readonly V[],
  exists: { groups: ReadonlySet<string>; projects: ReadonlySet<string> },
): Selected<V> {
  const byId = new Map(inventory.map((v) => [v.id, v]));
  const chosen = new Map<string, V>();
  const missing: string[] = [];
  for (const id of selection.vms) {
    const vm = byId.get(id);
    if (vm) chosen.set(vm.id, vm);
    else missing.push(`VM ${id} no longer exists`);
  }
  const groups = new Set(selection.groups);
  const projects = new Set(selection.projects);
  for (const g of groups) if (!exists.groups.has(g)) missing.push(`placement group ${g} no longer exists`);
  for (const p of projects) if (!exists.projects.has(p)) missing.push(`project ${p} no longer exists`);
  for (const vm of inventory) {
    if ((vm.project !== null && projects.has(vm.project)) || vm.groups.some((g) => groups.has(g)))
      chosen.set(vm.id, vm);
  }
  return { vms: [...chosen.values()].sort((a, b) => a.name.localeCompare(b.name)), missing };
}
