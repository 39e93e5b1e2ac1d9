/**
 * VM snapshots are internal qcow2 snapshots of every writable disk, taken together.
 *
 * Internal, because a VM's disk stays one file: a linked clone is already an overlay on its
 * template, and a growing chain of external overlays per snapshot would have to be merged
 * back; internal snapshots revert at once and qemu-img handles them offline. A running VM is
 * snapshotted in one QMP transaction across its disks, with the guest's filesystems frozen
 * through qemu-ga when it answers (application-consistent), crash-consistent otherwise.
 * Reverting needs the VM stopped.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { diskSlot } from '../../wire/vm.ts';
import { deleteSnapshotInternal, snapshotInternal } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

export interface SnapshotResult {
  consistency: 'filesystem-frozen' | 'crash-consistent';
}

function writableDisks(vm: VmProcess): string[] {
  return vm.spec.disks.flatMap((d, i) =>
    d.readonly || d.format !== 'qcow2' ? [] : [vm.blockNodes(diskSlot(d, i)).format],
  );
}

export async function snapshotRunning(vm: VmProcess, name: string, log: Logger): Promise<SnapshotResult> {
  const disks = writableDisks(vm);
  if (disks.length === 0) throw new TernError('conflict', `VM ${vm.spec.name} has no qcow2 disk to snapshot`);
  let frozen = false;
  try {
    await vm.freezeFilesystems();
    frozen = true;
  } catch (err) {
    log.warn({ vm: vm.id, err: (err as Error).message }, 'snapshot without filesystem freeze');
  }
  try {
    await snapshotInternal(vm.monitor, disks, name);
  } finally {
    // Thaw even if the snapshot failed: a frozen guest stops writing altogether.
    if (frozen) await vm.thawFilesystems();
  }
  return { consistency: frozen ? 'filesystem-frozen' : 'crash-consistent' };
}

export async function deleteSnapshotRunning(vm: VmProcess, name: string): Promise<void> {
  for (const device of writableDisks(vm)) {
    await deleteSnapshotInternal(vm.monitor, device, name).catch((err: TernError) => {
      // A disk added after the snapshot does not have it.
      if (!/not found|does not exist/i.test(err.message)) throw err;
    });
  }
}
