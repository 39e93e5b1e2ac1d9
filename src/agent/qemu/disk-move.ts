/**
 * Storage migration on one host: a running VM's disk mirrored to a new volume (another pool),
 * then switched over with `job-complete` once the copy is in sync. The old volume is left
 * in place for the caller to delete. QEMU cannot rename block nodes, so the new ones get
 * names of their own, recorded by the VM process (blockNodes) until QEMU ends.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { MigrationReport, MoveDiskRequest } from '../../wire/agent.ts';
import { diskSlot } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { createVolume, deleteVolume, volumeInfo } from '../storage/volumes.ts';
import { endJobs, waitReady } from './disk-mirror.ts';
import { addNodePair, blockdevMirror, removeNodePair } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/**
 * Moves disk `req.index` of a running VM to a new volume `req.target`, made here for it and
 * removed again if the move fails; the VM's spec names the new volume once it is in use.
 */
export async function moveDisk(
  vm: VmProcess,
  req: MoveDiskRequest,
  pools: Pools,
  log: Logger,
  progress: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<void> {
  const disk = vm.spec.disks[req.index];
  if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${req.index}`);
  if (disk.readonly)
    throw new TernError('invalid_request', `disk ${req.index} is read-only; copy its volume`);
  if (vm.state !== 'running') throw new TernError('conflict', `VM ${vm.spec.name} is ${vm.state}`);
  const info = await volumeInfo(pools, disk.volume);
  await createVolume(pools, { volume: req.target, format: disk.format, sizeBytes: info.virtualBytes });
  try {
    await moveDiskRunning(
      vm,
      req.index,
      { file: resolveVolume(pools, req.target), format: disk.format },
      progress,
      signal,
    );
  } catch (err) {
    deleteVolume(pools, req.target);
    throw err;
  }
  const disks = vm.spec.disks.map((d, i) =>
    i === req.index ? { ...d, volume: req.target, slot: diskSlot(d, i) } : d,
  );
  vm.updateSpec({ ...vm.spec, disks });
  log.info({ vm: vm.id, index: req.index, to: req.target }, 'moved a disk');
}

export async function moveDiskRunning(
  vm: VmProcess,
  index: number,
  target: { file: string; format: 'qcow2' | 'raw' },
  progress: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<{ file: string; format: string }> {
  const disk = vm.spec.disks[index];
  const slot = diskSlot(disk, index);
  const from = vm.blockNodes(slot);
  // Unique per move, short enough for QEMU's 31-character node names.
  const tag = Date.now().toString(36);
  const to = { file: `disk${slot}-${tag}-file`, format: `disk${slot}-${tag}` };
  const job = `move-disk${slot}`;
  await addNodePair(
    vm.monitor,
    { driver: 'file', filename: target.file, 'node-name': to.file, discard: 'unmap' },
    { driver: target.format, file: to.file, 'node-name': to.format, discard: 'unmap' },
  );
  let switched = false;
  try {
    await blockdevMirror(vm.monitor, job, from.format, to.format);
    const check = () => (signal.aborted ? new TernError('cancelled', 'the disk move was cancelled') : null);
    await waitReady(vm, [job], check, progress);
    const check2 = check();
    if (check2) throw check2;
    const errors = await endJobs(vm, [job], 'complete');
    if (errors.length > 0)
      throw new TernError('hypervisor_error', `switching to the copy failed: ${errors.join('; ')}`);
    switched = true;
  } catch (err) {
    await endJobs(vm, [job], 'force-cancel').catch(() => []);
    await removeNodePair(vm.monitor, to, true);
    throw err;
  } finally {
    // The old nodes hang on nothing now; closing them lets go of the old volume.
    if (switched) await removeNodePair(vm.monitor, from, true);
  }
  vm.setBlockNodes(slot, to);
  return to;
}
