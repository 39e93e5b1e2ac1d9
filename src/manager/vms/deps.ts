/** What the VM tasks need from the rest of the manager. */
import { TernError } from '../../errors.ts';
import type { Placer } from '../cluster/placer.ts';
import type { Db } from '../db/database.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { EventBus } from '../events/bus.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TemplateStore } from '../library/templates.ts';
import type { VmStore } from './store.ts';
import { forceOffFirst, refuseUnreachable } from './unreachable.ts';

export interface VmDeps {
  db: Db;
  store: VmStore;
  placer: Placer;
  hosts: HostRegistry;
  templates: TemplateStore;
  bus: EventBus;
  /**
   * HA admission of a stopped VM's start on `hostId` (ha/admit-start.ts, given at start: HA sits
   * above VMs): a warning for the task log, or null; throws when strict admission refuses.
   */
  admitStart: (row: VmTable, hostId: string) => Promise<string | null>;
  /** Runs before a stopped VM starts (image pools remake non-persistent write caches there). */
  beforeStart?: (vmId: string) => Promise<void>;
}

/** A VM's row, its spec and the agent of its host: what nearly every VM task starts from. */
export async function loadVm(deps: VmDeps, vmId: string) {
  const row = await deps.store.row(vmId);
  if (!row.hostId) throw new TernError('conflict', `VM ${row.name} has no host`);
  return { row, spec: vmSpecOf(row), agent: deps.hosts.client(row.hostId) };
}

/** Disk `index` of a VM, with the VM; never of an unreachable VM, whose guest may be writing it. */
export async function loadDisk(deps: VmDeps, vmId: string, index: number) {
  const vm = await loadVm(deps, vmId);
  refuseUnreachable(vm.row, forceOffFirst(vm.row.name));
  const disk = vm.spec.disks[index];
  if (!disk) throw new TernError('not_found', `VM ${vm.row.name} has no disk ${index}`);
  return { ...vm, disk };
}
