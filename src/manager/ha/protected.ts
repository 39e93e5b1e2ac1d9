/** The VMs HA looks after, with what a restart of each needs, read from the inventory. */
import type { VmHaPolicy } from '../../wire/ha.ts';
import {
  baselineOf,
  type ClusterSnapshot,
  existingPool,
  groupsOfVm,
  volumesOf,
} from '../cluster/inventory.ts';
import type { Db } from '../db/database.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { networksOf } from '../networks/nics.ts';
import { isProtected } from './assignment.ts';
import type { HaVm } from './restart-plan.ts';

/** VMs with a restart policy other than `none`, each as a restart of it would be placed. */
export async function haVms(db: Db, snapshot: ClusterSnapshot, rows: readonly VmTable[]): Promise<HaVm[]> {
  const baseline = baselineOf(snapshot).model;
  const out: HaVm[] = [];
  for (const r of rows) {
    const policy = r.haPolicy ? (JSON.parse(r.haPolicy) as VmHaPolicy) : null;
    if (!r.hostId || !policy || !isProtected(policy)) continue;
    const spec = vmSpecOf(r);
    out.push({
      vmId: r.id,
      hostId: r.hostId,
      policy,
      demand: {
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
        diskBytes: 0,
        // Its volumes stay where they are: only hosts that reach them qualify (shared storage).
        pools: [...new Set(volumesOf(spec).map((v) => existingPool(snapshot, r.hostId!, v)))],
        cpu: r.cpuMode === 'host' ? { mode: 'host' } : { mode: 'compat', model: baseline },
        groups: await groupsOfVm(db, r.id),
        uefi: spec.firmware === 'uefi',
        networks: networksOf(spec),
        exclude: [r.hostId],
      },
    });
  }
  return out;
}
