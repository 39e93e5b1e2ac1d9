/** `tern vm disk …`: a VM's disks: add, remove, resize, move to another pool. */
import { TernError } from '../../errors.ts';
import { migrationRoutes } from '../../wire/api/migration.ts';
import { vmStorageRoutes } from '../../wire/api/vm-storage.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printText } from '../output.ts';
import { followTask, waitForTask } from '../progress.ts';
import { type Command, viaGroup } from '../registry.ts';
import { parseSize } from '../sizes.ts';

async function diskCommand(api: ApiClient, args: string[], flags: Flags): Promise<void> {
  const [op, vm, a, b] = args;
  // INDEX is checked here, before it becomes the route's number.
  const index = a !== undefined && /^\d+$/.test(a) ? Number(a) : undefined;
  if (op === 'add' && vm && a) {
    // SIZE makes a new empty disk; POOL:PATH attaches an existing volume.
    const m = /^([A-Za-z0-9-]+):(.+)$/.exec(a);
    const body = m ? { volume: { pool: m[1], path: m[2] } } : { sizeGiB: parseSize(a, 'G', 'SIZE') / 1024 };
    const { task } = await api.call(vmStorageRoutes.attachDisk, { params: { vm }, body });
    return followTask(api, flags, task);
  }
  if (op === 'remove' && vm && index !== undefined) {
    const { task } = await api.call(vmStorageRoutes.detachDisk, {
      params: { vm, index },
      query: { keep: flags['keep-disks'] },
    });
    return followTask(api, flags, task);
  }
  if (op === 'move' && vm && index !== undefined && b) {
    const { task } = await api.call(migrationRoutes.moveDisk, { params: { vm, index }, body: { pool: b } });
    return followTask(api, flags, task);
  }
  if (op === 'resize' && vm && index !== undefined && b) {
    const body = { sizeGiB: parseSize(b, 'G', 'SIZE') / 1024, ...(flags['grow-fs'] ? { growFs: true } : {}) };
    const { task } = await api.call(vmStorageRoutes.resizeDisk, { params: { vm, index }, body });
    if (!flags['grow-fs'] || flags['no-wait'] || flags.output === 'json') return followTask(api, flags, task);
    // What was grown inside the guest, and what was not and why.
    const done = await waitForTask(api, task, false);
    const fs = (done.result as { filesystem?: { message: string } } | null)?.filesystem;
    if (fs) printText(`${fs.message}\n`);
    return;
  }
  throw new TernError(
    'invalid_request',
    'usage: tern vm disk add VM SIZE|POOL:PATH | remove VM INDEX [--keep-disks] | resize VM INDEX SIZE [--grow-fs] | move VM INDEX POOL',
  );
}

const run = viaGroup((api, _sub, args, flags) => diskCommand(api, args, flags));

export const vmDiskCommands: Command[] = [
  {
    path: 'vm disk add',
    args: 'VM SIZE|POOL:PATH',
    summary: 'a new empty disk, or an existing volume (hot-plugged when the VM runs)',
    flags: ['no-wait'],
    run,
  },
  {
    path: 'vm disk remove',
    args: 'VM INDEX',
    summary: 'detach a disk, and delete it unless --keep-disks',
    flags: [['keep-disks', 'keep the volume'], 'no-wait'],
    run,
  },
  {
    path: 'vm disk resize',
    args: 'VM INDEX SIZE',
    summary: 'grow a disk',
    flags: ['grow-fs', 'no-wait'],
    run,
  },
  {
    path: 'vm disk move',
    args: 'VM INDEX POOL',
    summary: 'storage migration (live when the VM runs)',
    flags: ['no-wait'],
    run,
  },
];
