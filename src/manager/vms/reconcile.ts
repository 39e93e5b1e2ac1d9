/**
 * Reality wins: what a host reports about a VM decides the VM's state in the inventory.
 * Pure, so every case (crash seen late, VM unknown to its host, host unreachable) is tested.
 */
import type { AgentVm } from '../../wire/agent.ts';
import type { Orphan, VmDir } from '../../wire/orphan.ts';
import type { PowerState } from '../../wire/vm.ts';

export interface VmState {
  state: PowerState;
  reason: string | null;
}

/** `reported` is null when the host answered and does not run the VM. */
export function reconcileVm(current: VmState, reported: AgentVm | null): VmState {
  if (reported) {
    switch (reported.state) {
      case 'running':
        // A running VM has a reason only when something is wrong with it (a corrupt disk).
        return { state: 'running', reason: reported.reason };
      case 'paused':
        return { state: 'paused', reason: reported.reason };
      case 'shutdown':
      case 'stopped':
        return { state: 'stopped', reason: reported.reason };
      case 'crashed':
        return { state: 'crashed', reason: reported.reason };
      case 'unreachable':
        return { state: 'unreachable', reason: reported.reason };
    }
  }
  if (
    current.state === 'running' ||
    current.state === 'paused' ||
    current.state === 'unreachable' ||
    current.state === 'unknown'
  ) {
    return { state: 'missing', reason: 'its host does not run it any more' };
  }
  return current;
}

/** The host cannot be reached: what ran there is unknown, what was stopped stays stopped. */
export function hostUnreachable(current: VmState, why: string): VmState {
  if (current.state === 'running' || current.state === 'paused' || current.state === 'unreachable') {
    return { state: 'unknown', reason: `host unreachable: ${why}` };
  }
  return current;
}

/**
 * A running (or paused, or unreachable: its QEMU runs) orphan is adopted as a VM, from the spec
 * its QEMU runs with.
 */
export const adoptsAsVm = (o: Orphan): boolean =>
  o.qemu?.state === 'running' || o.qemu?.state === 'paused' || o.qemu?.state === 'unreachable';

/**
 * What a host holds that no VM of the inventory accounts for: a QEMU process (or record) of an
 * unknown VM, and the volumes in `vms/<id>/` directories of unknown VMs that were not kept on
 * purpose (`keptVolumes`, as `pool:path`). Directories of known VMs are never orphans: a VM
 * may hold more there than its spec names (a disk being moved, one detached and kept).
 */
export function findOrphans(
  host: string,
  reported: readonly AgentVm[],
  dirs: readonly VmDir[],
  knownVms: ReadonlySet<string>,
  keptVolumes: ReadonlySet<string>,
): Orphan[] {
  const orphans = new Map<string, Orphan>();
  const orphan = (id: string): Orphan => {
    let o = orphans.get(id);
    if (!o) {
      o = { id, host, name: null, qemu: null, volumes: [] };
      orphans.set(id, o);
    }
    return o;
  };
  for (const vm of reported) {
    if (knownVms.has(vm.id)) continue;
    const o = orphan(vm.id);
    o.name = vm.name;
    o.qemu = { state: vm.state, pid: vm.pid };
  }
  for (const dir of dirs) {
    if (knownVms.has(dir.id)) continue;
    const loose = dir.files.filter((f) => !keptVolumes.has(`${dir.pool}:${f.path}`));
    if (loose.length === 0) continue;
    orphan(dir.id).volumes.push(...loose.map((f) => ({ pool: dir.pool, path: f.path, bytes: f.bytes })));
  }
  return [...orphans.values()].sort((a, b) => a.id.localeCompare(b.id));
}
