/**
 * Where a stopped VM starts: on its host when that host still takes it (online, room, CPU),
 * otherwise on the host placement picks — which can only be one that reaches all its volumes,
 * so a VM on local storage never silently moves. A `compat` VM gets the cluster's CPU baseline as
 * it is now, since hosts may have joined or left since it last ran.
 */
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { baselineOf, existingPool, groupsOfVm, type Reservation, volumesOf } from '../cluster/inventory.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { networksOf } from '../networks/nics.ts';
import type { VmGroup } from '../placement/model.ts';
import type { VmDeps } from './deps.ts';

/**
 * Admits the start of a stopped VM: picks its host as above and holds the room there (see
 * `Placer.reserve`) until `deps.placer.release(row.id)`; writes nothing. A start that no host
 * has room for is refused as a conflict, with every host's reason.
 */
export async function admitStart(
  deps: VmDeps,
  row: VmTable,
): Promise<{ hostId: string; spec: VmSpec; hold: Reservation }> {
  return deps.placer.reserve(row.id, decideStart(deps, row, await groupsOfVm(deps.db, row.id)));
}

/** As `admitStart`, unless a start of the VM holds room already: then null. */
export async function admitStartUnlessHeld(
  deps: VmDeps,
  row: VmTable,
): Promise<{ hostId: string; spec: VmSpec; hold: Reservation } | null> {
  return deps.placer.reserveUnlessHeld(row.id, decideStart(deps, row, await groupsOfVm(deps.db, row.id)));
}

function decideStart(deps: VmDeps, row: VmTable, groups: VmGroup[]) {
  const spec = vmSpecOf(row);
  const current = row.hostId!;
  return async () => {
    const snapshot = await deps.placer.snapshot(row.id);
    const cpuModel = row.cpuMode === 'host' ? 'host' : baselineOf(snapshot).model;
    const pools = [...new Set(volumesOf(spec).map((v) => existingPool(snapshot, current, v)))];
    const placement = await deps.placer.explain(
      {
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        diskBytes: 0,
        pools,
        cpu: row.cpuMode === 'host' ? { mode: 'host' } : { mode: 'compat', model: cpuModel },
        groups,
        uefi: spec.firmware === 'uefi',
        networks: networksOf(spec),
      },
      snapshot,
    );
    const here = placement.verdicts.find((v) => v.hostId === current);
    let hostId = current;
    if (!here?.eligible) {
      if (!placement.hostId) {
        throw new TernError(
          'conflict',
          `VM ${row.name} cannot start: ${here?.reason ?? 'its host is gone'}; ${placement.summary}`,
          { verdicts: placement.verdicts.map((v) => ({ host: v.host, filter: v.filter, reason: v.reason })) },
        );
      }
      hostId = placement.hostId;
    }
    return { hostId, vcpus: spec.vcpus, memoryMiB: spec.memoryMiB, spec: { ...spec, cpuModel } };
  };
}

/** Admits the start (see `admitStart`) and records the host and CPU model it starts with. */
export async function hostForStart(deps: VmDeps, row: VmTable): Promise<{ hostId: string; spec: VmSpec }> {
  const { hostId, spec } = await admitStart(deps, row);
  if (hostId !== row.hostId || spec.cpuModel !== vmSpecOf(row).cpuModel) {
    await deps.store.update(row.id, { hostId, spec: JSON.stringify(spec) });
  }
  return { hostId, spec };
}
