/**
 * Disk hot-plug of a running VM: a disk goes in as a file node, a format node on it
 * and a device, each step undone again if a later one fails, so a failed attach leaves no
 * half-plugged nodes behind; it comes out only once the guest has released the device.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import { type DiskSpec, diskSlot, withoutDisk } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { diskDevice, diskNodes } from './command-line.ts';
import { addNodePair, deviceAdd, deviceDel, qmpEvents, removeNodePair } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/** Hot-plugs a disk into a running VM at a free slot. */
export async function attachDiskRunning(vm: VmProcess, disk: DiskSpec, pools: Pools): Promise<void> {
  const slot = disk.slot ?? 0;
  if (vm.spec.disks.some((d, i) => diskSlot(d, i) === slot)) {
    throw new TernError('conflict', `slot ${slot} of ${vm.spec.name} holds a disk`);
  }
  const file = resolveVolume(pools, disk.volume);
  if (!fs.existsSync(file)) throw new TernError('storage_error', `volume ${disk.volume.path} does not exist`);
  const n = diskNodes(slot);
  const ro = disk.readonly;
  await addNodePair(
    vm.monitor,
    { driver: 'file', filename: file, 'node-name': n.file, 'read-only': ro },
    { driver: disk.format, file: n.file, 'node-name': n.format, 'read-only': ro },
  );
  try {
    await deviceAdd(vm.monitor, diskDevice(slot, vm.spec.machine === 'q35'));
  } catch (err) {
    await removeNodePair(vm.monitor, n, true);
    throw err;
  }
  vm.updateSpec({ ...vm.spec, disks: [...vm.spec.disks, { ...disk, slot }] });
  await vm.refreshGuestFacts().catch(() => {});
}

/** Unplugs a disk from a running VM; the guest has to let go of it (PCIe hot-unplug). */
export async function detachDiskRunning(vm: VmProcess, index: number): Promise<void> {
  const disk = vm.spec.disks[index];
  if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
  const n = vm.blockNodes(diskSlot(disk, index));
  const deleted = vm.event(qmpEvents.deviceDeleted, 60_000, (d) => d.device === n.device);
  deleted.catch(() => {});
  await deviceDel(vm.monitor, n.device);
  try {
    await deleted;
  } catch {
    throw new TernError('timeout', `the guest of ${vm.spec.name} did not release disk ${index} within 60 s`);
  }
  await removeNodePair(vm.monitor, n);
  vm.setBlockNodes(diskSlot(disk, index), null);
  // The other disks keep their slots: QEMU names their nodes and devices after them.
  vm.updateSpec({ ...vm.spec, disks: withoutDisk(vm.spec, index) });
  await vm.refreshGuestFacts().catch(() => {});
}
