/**
 * A VM standing on a recovery point (pure): its disks are overlays the replica's host lends
 * from the point (`vms/<id>/<disk>-<point>.qcow2` in the replica's pool: a retry on another
 * point never meets the volumes of the first), everything else is the
 * replicated VM's spec. The seed and the UEFI variable store were the primary's files, which
 * the replica does not hold: no seed (the guest's identity is on its disk already), fresh
 * variables for a UEFI VM.
 */
import { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { LendPointRequest } from '../../wire/replication.ts';
import type { NicSpec, VmSpec } from '../../wire/vm.ts';
import { parseSubnet } from '../networks/ipam.ts';

export interface LentVm {
  spec: VmSpec;
  /** What the replica's host is asked to lend. */
  disks: LendPointRequest['disks'];
  diskSizes: number[];
  /** Volumes made beside the lent ones (a UEFI VM's variable store). */
  extra: CreateVolumeRequest[];
}

const diskIndex = (name: string): number | null => {
  const m = /^disk(\d+)$/.exec(name);
  return m ? Number(m[1]) : null;
};

export function planLentVm(
  replicated: VmSpec,
  point: readonly { name: string; sizeBytes: number }[],
  to: { id: string; name: string; pool: string; point: string; nics: NicSpec[] },
): LentVm {
  const dir = `vms/${to.id}`;
  const disks: LentVm['disks'] = [];
  const specDisks: VmSpec['disks'] = [];
  for (const d of point) {
    const i = diskIndex(d.name);
    const was = i === null ? undefined : replicated.disks[i];
    if (i === null || !was)
      throw new TernError('conflict', `recovery point disk ${d.name} matches no disk of ${replicated.name}`);
    const volume = { pool: to.pool, path: `${dir}/${d.name}-${to.point}.qcow2` };
    disks.push({ name: d.name, target: volume });
    specDisks.push({ volume, format: 'qcow2', readonly: false, slot: was.slot ?? i });
  }
  const efiVars = replicated.firmware === 'uefi' ? { pool: to.pool, path: `${dir}/efivars.fd` } : undefined;
  const { seed: _seed, efiVars: _vars, cdrom, ...rest } = replicated;
  return {
    spec: {
      ...rest,
      id: to.id,
      name: to.name,
      disks: specDisks,
      nics: to.nics,
      ...(efiVars ? { efiVars } : {}),
      ...(cdrom ? { cdrom: { medium: null } } : {}),
    },
    disks,
    diskSizes: point.map((d) => d.sizeBytes),
    extra: efiVars ? [{ volume: efiVars, format: 'raw', content: 'uefi-vars' }] : [],
  };
}

/**
 * A /24 for a test failover's own isolated network: the first of 10.254.0.0/16 that overlaps
 * no network of the cluster (a host carries every network's bridge, so subnets must not clash).
 */
export function testSubnet(existing: readonly string[]): string {
  const taken = existing.map((cidr) => parseSubnet(cidr));
  for (let x = 0; x < 256; x++) {
    const s = parseSubnet(`10.254.${x}.0/24`);
    if (!taken.some((t) => t.base < s.base + s.size && s.base < t.base + t.size)) return `10.254.${x}.0/24`;
  }
  throw new TernError(
    'conflict',
    'no free /24 in 10.254.0.0/16 for a test network: name an isolated network',
  );
}
