/**
 * A migration carries the VM's backup and replication bitmaps (`dirty-bitmaps` capability), so
 * the first backup or replication cycle on the target host reads only what changed. With the disks mirrored the target's images are
 * new and would have none; with shared storage QEMU would store them at the source's end and
 * load them on the target, but carried they never leave memory marked in use. The target's
 * nodes are named after the disk's slot (command-line.ts); the source's may differ after a
 * disk move, hence an explicit mapping. A bitmap QEMU found inconsistent is removed, not sent:
 * it could never be trusted again, and the target would have to refuse it anyway.
 */

import { isTernBitmap } from '../../wire/replication.ts';
import { diskSlot } from '../../wire/vm.ts';
import { diskNodes } from './command-line.ts';
import { dirtyBitmaps, removeDirtyBitmap } from './qmp-backup-commands.ts';
import { type BitmapMapping, migrateSetBitmapMapping, migrateSetCapabilities } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/** Sets up the source to send the backup and replication bitmaps (or none); answers how many. */
export async function carryDirtyBitmaps(vm: VmProcess): Promise<number> {
  const m = vm.monitor;
  const mapping: BitmapMapping[] = [];
  for (const [i, disk] of vm.spec.disks.entries()) {
    if (disk.format !== 'qcow2' || disk.readonly) continue;
    const slot = diskSlot(disk, i);
    const node = vm.blockNodes(slot).format;
    const ours = (await dirtyBitmaps(m, node)).filter((b) => isTernBitmap(b.name));
    for (const b of ours) if (b.inconsistent) await removeDirtyBitmap(m, node, b.name);
    // A backup's view bitmap is not persistent and ends with it.
    const carried = ours.filter((b) => !b.inconsistent && b.persistent);
    if (carried.length)
      mapping.push({
        'node-name': node,
        alias: diskNodes(slot).format,
        bitmaps: carried.map((b) => ({ name: b.name, alias: b.name })),
      });
  }
  // Set either way: a cancelled earlier try may have left the capability on.
  await migrateSetCapabilities(m, { 'dirty-bitmaps': mapping.length > 0 });
  if (mapping.length) await migrateSetBitmapMapping(m, mapping);
  return mapping.reduce((n, e) => n + e.bitmaps.length, 0);
}
