/**
 * What a restore writes where (pure). As a new VM: the backed-up spec under a new id and name,
 * each backed-up disk a new qcow2 volume of the backed-up size in the chosen pool, NICs given
 * anew by the caller (new MACs, new addresses), no cloud-init seed (the guest keeps the identity
 * it had: it is a restore, not a clone), a fresh UEFI variable store. In place: each
 * backed-up disk onto the VM's own volume, which must still be the same disk at the same size.
 */
import { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { BackupDiskResult } from '../../wire/backup.ts';
import { diskSlot, type NicSpec, type VmSpec, type VolumeRef } from '../../wire/vm.ts';
import { diskIndexOf } from './names.ts';

/** One backed-up disk and the volume it is written onto. */
export interface RestoreTarget {
  disk: string;
  volume: VolumeRef;
  format: 'qcow2' | 'raw';
  sizeBytes: number;
}

export interface NewVmRestore {
  spec: VmSpec;
  /** Made before the disks are written: the disks' volumes (and a UEFI variable store). */
  volumes: CreateVolumeRequest[];
  targets: RestoreTarget[];
  diskSizes: number[];
}

export function planNewVm(
  backedUp: VmSpec,
  disks: readonly BackupDiskResult[],
  to: { id: string; name: string; pool: string; nics: NicSpec[] },
): NewVmRestore {
  const dir = `vms/${to.id}`;
  const targets: RestoreTarget[] = [];
  const specDisks: VmSpec['disks'] = [];
  for (const d of disks) {
    const index = diskIndexOf(d.name);
    const was = index === null ? undefined : backedUp.disks[index];
    if (index === null || !was)
      throw new TernError('conflict', `backup disk ${d.name} matches no disk of the backed-up VM`);
    const volume = { pool: to.pool, path: `${dir}/${d.name}.qcow2` };
    targets.push({ disk: d.name, volume, format: 'qcow2', sizeBytes: d.sizeBytes });
    specDisks.push({ volume, format: 'qcow2', readonly: false, slot: diskSlot(was, index) });
  }
  const efiVars = backedUp.firmware === 'uefi' ? { pool: to.pool, path: `${dir}/efivars.fd` } : undefined;
  const { seed: _seed, efiVars: _vars, cdrom, ...rest } = backedUp;
  const spec: VmSpec = {
    ...rest,
    id: to.id,
    name: to.name,
    disks: specDisks,
    nics: to.nics,
    ...(efiVars ? { efiVars } : {}),
    // The medium was the old VM's: the drive stays, empty.
    ...(cdrom ? { cdrom: { medium: null } } : {}),
  };
  const volumes: CreateVolumeRequest[] = [
    ...targets.map((t) => ({ volume: t.volume, format: t.format, sizeBytes: t.sizeBytes })),
    ...(efiVars ? [{ volume: efiVars, format: 'raw' as const, content: 'uefi-vars' as const }] : []),
  ];
  return { spec, volumes, targets, diskSizes: targets.map((t) => t.sizeBytes) };
}

/** In place: every backed-up disk onto the VM's disk of the same index, same size. */
export function planInPlace(
  current: VmSpec,
  currentSizes: readonly number[],
  disks: readonly BackupDiskResult[],
): RestoreTarget[] {
  return disks.map((d) => {
    const index = diskIndexOf(d.name);
    const now = index === null ? undefined : current.disks[index];
    if (index === null || !now || now.readonly)
      throw new TernError(
        'conflict',
        `VM ${current.name} has no writable disk ${index ?? d.name} to restore ${d.name} onto`,
      );
    if (currentSizes[index] !== d.sizeBytes)
      throw new TernError(
        'conflict',
        `disk ${index} of ${current.name} is ${currentSizes[index]} bytes, the backup's ${d.sizeBytes}: restore as a new VM`,
      );
    return { disk: d.name, volume: now.volume, format: now.format, sizeBytes: d.sizeBytes };
  });
}

/** The NIC requests that give a restored VM NICs like the backed-up one's (new MACs and addresses). */
export function nicRequestsOf(backedUp: Pick<VmSpec, 'nics'>) {
  return backedUp.nics.map((n) =>
    n.network.mode === 'network'
      ? { mode: 'network' as const, network: n.network.network }
      : n.network.mode === 'bridge'
        ? { mode: 'bridge' as const, bridge: n.network.bridge }
        : { mode: 'user' as const },
  );
}
