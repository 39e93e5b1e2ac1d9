/**
 * Changing the medium of a running VM's CD-ROM in QMP: open the tray (forced if asked, since the
 * guest may lock it), take the old medium out and drop its nodes, add the new one's nodes under
 * the same names, put it in, close the tray. The spec records what is in the drive afterwards.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { cdromMediumNodes, cdromNodes } from './command-line.ts';
import {
  addNodePair,
  type BlockInfo,
  blockdevDel,
  blockNodeNames,
  closeTray,
  insertMedium,
  openTray,
  queryBlock,
  removeMedium,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/** The CD-ROM drive as QEMU sees it now. */
async function driveOf(vm: VmProcess): Promise<BlockInfo | undefined> {
  const blocks = await queryBlock(vm.monitor);
  return blocks.find((b) => b.qdev === cdromNodes.device || b.qdev?.endsWith(`/${cdromNodes.device}`));
}

async function dropNodes(vm: VmProcess): Promise<void> {
  const nodes = await blockNodeNames(vm.monitor);
  for (const name of [cdromNodes.format, cdromNodes.file]) {
    if (nodes.includes(name)) await blockdevDel(vm.monitor, name);
  }
}

export async function changeCdromRunning(
  vm: VmProcess,
  medium: VolumeRef | null,
  force: boolean,
  pools: Pools,
): Promise<void> {
  if (!vm.spec.cdrom)
    throw new TernError(
      'conflict',
      `VM ${vm.spec.name} has no CD-ROM drive; a drive can only be added while it is stopped`,
    );
  const file = medium ? resolveVolume(pools, medium) : null;
  if (file && !fs.existsSync(file))
    throw new TernError('storage_error', `volume ${medium!.pool}:${medium!.path} does not exist`);
  const id = cdromNodes.device;
  const before = await driveOf(vm);
  if (before?.inserted || !before?.tray_open) {
    await openTray(vm.monitor, id, force);
    const now = await driveOf(vm);
    if (!now?.tray_open) {
      // QEMU asked the guest to eject; a guest that has the tray locked (a mounted CD) keeps it.
      throw new TernError(
        'conflict',
        `the guest of ${vm.spec.name} keeps its CD-ROM tray locked (the disc is in use); unmount it in the guest or force it`,
      );
    }
    await removeMedium(vm.monitor, id);
    // Out is out, whatever happens next: the spec says so at once.
    vm.updateSpec({ ...vm.spec, cdrom: { medium: null } });
  }
  await dropNodes(vm);
  if (file) {
    const nodes = cdromMediumNodes(file);
    await addNodePair(vm.monitor, nodes.file, nodes.format);
    try {
      await insertMedium(vm.monitor, id, cdromNodes.format);
    } catch (err) {
      await dropNodes(vm).catch(() => {});
      throw err;
    }
  }
  await closeTray(vm.monitor, id);
  vm.updateSpec({ ...vm.spec, cdrom: { medium } });
}
