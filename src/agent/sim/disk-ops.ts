/**
 * Disk operations on a running simulated VM: resize, hot-plug in and out, the CD-ROM's medium,
 * snapshots. The volumes are real files (the agent's storage module); the VM's spec and its
 * guest's disk list follow.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { type DiskSpec, diskSlot, type VolumeRef, withoutDisk } from '../../wire/vm.ts';
import { resolveVolume } from '../storage/pools.ts';
import { resizeVolume, volumeSnapshot } from '../storage/volumes.ts';
import type { SimVms } from './vms.ts';

export async function resizeDisk(sim: SimVms, id: string, index: number, sizeBytes: number): Promise<void> {
  const vm = sim.running(id);
  const disk = vm.spec.disks[index];
  if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
  await resizeVolume(sim.pools, { volume: disk.volume, sizeBytes });
}

export async function attachDisk(sim: SimVms, id: string, disk: DiskSpec): Promise<void> {
  const vm = sim.running(id);
  const slot = disk.slot ?? 0;
  if (vm.spec.disks.some((d, i) => diskSlot(d, i) === slot)) {
    throw new TernError('conflict', `slot ${slot} of ${vm.spec.name} holds a disk`);
  }
  if (!fs.existsSync(resolveVolume(sim.pools, disk.volume)))
    throw new TernError('storage_error', `volume ${disk.volume.path} does not exist`);
  vm.spec = { ...vm.spec, disks: [...vm.spec.disks, { ...disk, slot }] };
  sim.refreshGuestDisks(vm);
}

/** The simulated guest never locks its tray: a change always goes through. */
export async function changeCdrom(
  sim: SimVms,
  id: string,
  medium: VolumeRef | null,
  _force: boolean,
): Promise<void> {
  const vm = sim.running(id);
  if (!vm.spec.cdrom)
    throw new TernError(
      'conflict',
      `VM ${vm.spec.name} has no CD-ROM drive; a drive can only be added while it is stopped`,
    );
  if (medium && !fs.existsSync(resolveVolume(sim.pools, medium)))
    throw new TernError('storage_error', `volume ${medium.pool}:${medium.path} does not exist`);
  vm.spec = { ...vm.spec, cdrom: { medium } };
}

export async function detachDisk(sim: SimVms, id: string, index: number): Promise<void> {
  const vm = sim.running(id);
  if (!vm.spec.disks[index]) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
  if (vm.guestHung || vm.state !== 'running') {
    throw new TernError('timeout', `the guest of ${vm.spec.name} did not release disk ${index} within 60 s`);
  }
  vm.spec = { ...vm.spec, disks: withoutDisk(vm.spec, index) };
  sim.refreshGuestDisks(vm);
}

export async function snapshot(sim: SimVms, id: string, name: string) {
  const vm = sim.running(id);
  const disks = vm.spec.disks.filter((d) => !d.readonly && d.format === 'qcow2');
  if (disks.length === 0) throw new TernError('conflict', `VM ${vm.spec.name} has no qcow2 disk to snapshot`);
  const frozen = vm.state === 'running' && vm.guest.agent === 'responding' && !vm.guestHung;
  for (const d of disks) await volumeSnapshot(sim.pools, { volume: d.volume, op: 'create', name });
  return { consistency: frozen ? ('filesystem-frozen' as const) : ('crash-consistent' as const) };
}

export async function deleteSnapshot(sim: SimVms, id: string, name: string): Promise<void> {
  const vm = sim.running(id);
  for (const d of vm.spec.disks) {
    if (d.readonly || d.format !== 'qcow2') continue;
    await volumeSnapshot(sim.pools, { volume: d.volume, op: 'delete', name }).catch((err: Error) => {
      // A disk added after the snapshot does not have it.
      if (!/not found|does not exist/i.test(err.message)) throw err;
    });
  }
}
