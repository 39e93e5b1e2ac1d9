/**
 * What placement needs to find a new host for a VM that runs on `hostId` now: its CPUs and
 * memory, the pools its volumes must be reachable in, and the bytes of the volumes that are
 * copied (those in the source's local pools). Pure: the migrate task and the evacuation
 * planner read the inputs.
 */
import type { VmSpec } from '../../wire/vm.ts';
import { type ClusterSnapshot, cpuDemand } from '../cluster/inventory.ts';
import { networksOf } from '../networks/nics.ts';
import type { VmDemand, VmGroup } from '../placement/model.ts';

/** The inventory's view of a VM that moves: where it runs and what it holds there. */
export interface MovingVm {
  hostId: string;
  /** Disk sizes in bytes, by disk index, as the inventory records them (JSON). */
  diskSizes: string;
  cpuMode: string;
}

/** Null when the VM's host has not reported its facts. */
export function moveDemand(
  vm: MovingVm,
  spec: VmSpec,
  snapshot: ClusterSnapshot,
  groups: readonly VmGroup[],
  targetPool?: string,
): VmDemand | null {
  const source = snapshot.facts.get(vm.hostId);
  if (!source) return null;
  // Volumes the VM keeps where they are must be reachable; copied ones need room on the target.
  const pools = new Set<string>();
  let copied = 0;
  const sizes = JSON.parse(vm.diskSizes) as number[];
  for (const [i, d] of spec.disks.entries()) {
    const shared = source.pools.some((p) => p.name === d.volume.pool && p.shared);
    if (shared) pools.add(d.volume.pool);
    else copied += sizes[i] ?? 0;
  }
  const copyPool = targetPool ?? spec.disks.find((d) => !pools.has(d.volume.pool))?.volume.pool;
  return {
    vcpus: spec.vcpus,
    memoryMiB: spec.memoryMiB,
    diskBytes: copied,
    pools: [...(copied > 0 && copyPool ? [copyPool] : []), ...pools],
    cpu: cpuDemand(snapshot, vm.cpuMode, spec, vm.hostId),
    groups,
    uefi: spec.firmware === 'uefi',
    networks: networksOf(spec),
    exclude: [vm.hostId],
  };
}
