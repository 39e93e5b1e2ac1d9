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
import type { VmProcess } from './vm-process.ts';

interface BlockInfo {
  device: string;
  qdev?: string;
  tray_open?: boolean;
  locked?: boolean;
  inserted?: { 'node-name'?: string; file?: string };
}

/** The CD-ROM drive as QEMU sees it now. */
async function driveOf(vm: VmProcess): Promise<BlockInfo | undefined> {
  const blocks = await vm.monitor<BlockInfo[]>('query-block');
  return blocks.find((b) => b.qdev === cdromNodes.device || b.qdev?.endsWith(`/${cdromNodes.device}`));
}

async function dropNodes(vm: VmProcess): Promise<void> {
  const nodes = await vm.monitor<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
  for (const name of [cdromNodes.format, cdromNodes.file]) {
    if (nodes.some((n) => n['node-name'] === name)) await vm.monitor('blockdev-del', { 'node-name': name });
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
    await vm.monitor('blockdev-open-tray', { id, force });
    const now = await driveOf(vm);
    if (!now?.tray_open) {
      // QEMU asked the guest to eject; a guest that has the tray locked (a mounted CD) keeps it.
      throw new TernError(
        'conflict',
        `the guest of ${vm.spec.name} keeps its CD-ROM tray locked (the disc is in use); unmount it in the guest or force it`,
      );
    }
    await vm.monitor('blockdev-remove-medium', { id });
    // Out is out, whatever happens next: the spec says so at once.
    vm.updateSpec({ ...vm.spec, cdrom: { medium: null } });
  }
  await dropNodes(vm);
  if (file) {
    const nodes = cdromMediumNodes(file);
    await vm.monitor('blockdev-add', nodes.file);
    try {
      await vm.monitor('blockdev-add', nodes.format);
      await vm.monitor('blockdev-insert-medium', { id, 'node-name': cdromNodes.format });
    } catch (err) {
      await dropNodes(vm).catch(() => {});
      throw err;
    }
  }
  await vm.monitor('blockdev-close-tray', { id });
  vm.updateSpec({ ...vm.spec, cdrom: { medium } });
}
