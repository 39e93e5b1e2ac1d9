/**
 * A running VM's point-in-time view, for a backup or a replication cycle, without pausing its
 * guest. For each disk:
 *
 *   1. the guest's filesystems frozen through qemu-ga, when asked and it answers (bounded);
 *   2. one QMP transaction over all disks: a new persistent bitmap `<prefix>-<point>`
 *      starts recording, the VM's older ones of this prefix stop;
 *   3. a copy-before-write filter put between the device and the disk's format node (a sparse
 *      temporary beside the VM's runtime files takes the old contents of blocks the guest
 *      overwrites), and a snapshot-access node over it: the disk as it was at this instant;
 *   4. the filesystems thawed, always;
 *   5. one transaction: a disabled `<prefix>-view` bitmap, the merge of every bitmap of the
 *      prefix. Writes between 2 and 3 are in the view and in the new bitmap: this view reads
 *      them, the next reads them again; none is ever lost;
 *   6. QEMU's NBD server on a unix socket, the snapshot-access node exported read-only with the
 *      view bitmap;
 *   7. the reader (a backup's writer, a replication's sender) reads it over Tern's NBD client;
 *   8. teardown, in reverse, whatever happened: the export, the view, the device back on its
 *      disk, the filter and its temporary, the view bitmap. On success the older bitmaps go; on
 *      failure they stay and the next view merges them all (../backup/bitmap-trust.ts).
 *
 * Arguments as QEMU 7.2's iotests `image-fleecing` uses them (raw temporary, snapshot-access);
 * `on-cbw-error: break-snapshot` so a full temporary fails the reader, never a guest write.
 * Each disk gets its own instant (the filters go in one after the other): with the guest frozen
 * that is one consistent point; without, each disk is crash-consistent on its own.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { BackupDiskSource } from '../../wire/backup.ts';
import { diskSlot } from '../../wire/vm.ts';
import { bitmapDistrust, ownBitmaps, viewBitmap } from '../backup/bitmap-trust.ts';
import type { NbdClient } from '../backup/nbd/client.ts';
import { nbdDiskView } from '../backup/nbd-view.ts';
import type { DiskView, ViewLog, ViewRequest, VmView } from '../backup/view.ts';
import type { DiskNodes } from './moved-nodes.ts';
import {
  type BitmapAction,
  bitmapTransaction,
  copyBeforeWriteOptions,
  dirtyBitmaps,
  nodeSize,
  removeDirtyBitmap,
  setDeviceDrive,
  snapshotAccessOptions,
} from './qmp-backup-commands.ts';
import {
  blockdevAdd,
  blockdevDel,
  blockExportAddReadOnly,
  blockExportDel,
  blockExportIds,
  blockNodeNames,
  nbdServerStartUnix,
  nbdServerStop,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/** Dirty bitmap granularity: a 4 KiB guest write marks 64 KiB (bench/backup-chunks.ts). */
export const BITMAP_GRANULARITY = 64 * 1024;

interface DiskPlan {
  source: BackupDiskSource;
  slot: number;
  nodes: DiskNodes;
  tmpFile: string;
  tmp: string;
  cbw: string;
  snap: string;
  exportId: string;
  /** The disk's bitmaps of this prefix before the rotation (the view's temporary left out). */
  own: string[];
  distrust: string | null;
  /** The reader reads only what the bitmaps marked: there is a previous point and they are trusted. */
  useBitmap: boolean;
}

/**
 * Takes the view `req` asks for, gives it to `use`, and tears it down whatever happened; on
 * `use`'s success only the new bitmap stays. Answers what `use` answered.
 */
export async function withRunningView<T>(
  vm: VmProcess,
  req: ViewRequest,
  report: ViewLog,
  log: Logger,
  use: (view: VmView) => Promise<T>,
): Promise<T> {
  const m = vm.monitor;
  const plans = req.disks.map((d) => planDisk(vm, d));
  const socket = path.join(vm.paths.runDir, 'backup.sock');
  const fresh = `${req.bitmap}-${req.point}`;
  // What an agent killed while a view was taken left in QEMU goes first.
  await teardown(vm, plans, req.bitmap, fs.existsSync(socket) ? socket : null, log);

  const freshThere = new Set<string>();
  for (const p of plans) {
    if (p.source.format !== 'qcow2') continue;
    const bitmaps = ownBitmaps(await dirtyBitmaps(m, p.nodes.format), req.bitmap);
    p.distrust = bitmapDistrust(bitmaps, req.bitmap, req.previous);
    // An inconsistent bitmap can never be trusted again, nor disabled or merged: it goes.
    for (const b of bitmaps.filter((b) => b.inconsistent)) await removeDirtyBitmap(m, p.nodes.format, b.name);
    p.own = bitmaps.filter((b) => !b.inconsistent).map((b) => b.name);
    p.useBitmap = req.previous !== null && p.distrust === null;
    if (p.own.includes(fresh)) freshThere.add(p.source.name);
  }

  const clients: NbdClient[] = [];
  let serving = false;
  let tornDown = false;
  try {
    let takenAt = '';
    const consistency = await whileFrozen(vm, req, report, async () => {
      takenAt = new Date().toISOString();
      // A retried point finds its bitmap from the failed try: it records on.
      await bitmapTransaction(
        m,
        plans.flatMap((p): BitmapAction[] =>
          p.source.format !== 'qcow2'
            ? []
            : [
                freshThere.has(p.source.name)
                  ? { op: 'enable', node: p.nodes.format, name: fresh }
                  : {
                      op: 'add',
                      node: p.nodes.format,
                      name: fresh,
                      persistent: true,
                      disabled: false,
                      granularity: BITMAP_GRANULARITY,
                    },
                ...p.own
                  .filter((n) => n !== fresh)
                  .map((name): BitmapAction => ({ op: 'disable', node: p.nodes.format, name })),
              ],
        ),
      );
      for (const p of plans) await insertFilter(vm, p);
    });

    const view = viewBitmap(req.bitmap);
    await bitmapTransaction(
      m,
      plans.flatMap((p): BitmapAction[] =>
        !p.useBitmap
          ? []
          : [
              {
                op: 'add',
                node: p.nodes.format,
                name: view,
                persistent: false,
                disabled: true,
                granularity: BITMAP_GRANULARITY,
              },
              {
                op: 'merge',
                node: p.nodes.format,
                target: view,
                sources: [...new Set([...p.own, fresh])],
              },
            ],
      ),
    );
    await nbdServerStartUnix(m, socket);
    serving = true;
    const views: DiskView[] = [];
    for (const p of plans) {
      const bitmaps = p.useBitmap ? [{ node: p.nodes.format, name: view }] : [];
      await blockExportAddReadOnly(m, p.exportId, p.snap, p.source.name, bitmaps);
      const { view: v, client } = await nbdDiskView({
        name: p.source.name,
        format: p.source.format,
        socket,
        exportName: p.source.name,
        bitmap: p.useBitmap ? view : null,
        bitmapDistrust: p.distrust,
      });
      clients.push(client);
      views.push(v);
    }
    const result = await use({ takenAt, ...consistency, disks: views });
    for (const c of clients.splice(0)) await c.disconnect();
    tornDown = true;
    await teardown(vm, plans, req.bitmap, serving ? socket : null, log);
    // Only the new bitmap is needed from now on.
    for (const p of plans)
      for (const name of p.own)
        if (name !== fresh)
          await removeDirtyBitmap(m, p.nodes.format, name).catch((err: Error) =>
            log.warn({ vm: vm.id, bitmap: name, err: err.message }, 'an old dirty bitmap stays'),
          );
    return result;
  } finally {
    if (!tornDown) {
      for (const c of clients) await c.disconnect();
      await teardown(vm, plans, req.bitmap, serving ? socket : null, log);
    }
  }
}

function planDisk(vm: VmProcess, source: BackupDiskSource): DiskPlan {
  const i = vm.spec.disks.findIndex(
    (d) => d.volume.pool === source.volume.pool && d.volume.path === source.volume.path,
  );
  const disk = vm.spec.disks[i];
  if (!disk)
    throw new TernError(
      'invalid_request',
      `VM ${vm.spec.name} has no disk ${source.volume.pool}:${source.volume.path}`,
    );
  if (disk.format !== source.format)
    throw new TernError(
      'invalid_request',
      `disk ${source.name} of ${vm.spec.name} is ${disk.format}, not ${source.format}`,
    );
  const slot = diskSlot(disk, i);
  return {
    source,
    slot,
    nodes: vm.blockNodes(slot),
    tmpFile: path.join(vm.paths.runDir, `backup-disk${slot}.tmp`),
    tmp: `bk${slot}-tmp`,
    cbw: `bk${slot}-cbw`,
    snap: `bk${slot}-snap`,
    exportId: `bk${slot}`,
    own: [],
    distrust: null,
    useBitmap: false,
  };
}

/**
 * Runs `setup` with the guest's filesystems frozen when asked and its agent answers; thaws
 * whatever happened. Tells what consistency the view has, and why no more.
 */
async function whileFrozen(
  vm: VmProcess,
  req: ViewRequest,
  report: ViewLog,
  setup: () => Promise<void>,
): Promise<{ consistency: 'application' | 'crash'; consistencyNote: string | null }> {
  let note: string | null = null;
  let frozen = false;
  if (!req.freeze) note = 'no freeze asked';
  // A paused guest cannot answer a freeze: asking would only wait for its timeout.
  else if (vm.state !== 'running') note = `the VM is ${vm.state}: not frozen`;
  else if (vm.snapshot().guest.agent !== 'responding') note = 'the guest agent does not answer: not frozen';
  else {
    try {
      await vm.freezeFilesystems();
      frozen = true;
      report({ type: 'log', message: "the guest's filesystems are frozen while the view is taken" });
    } catch (err) {
      note = `the guest agent did not freeze the filesystems: ${(err as Error).message}`;
    }
  }
  try {
    await setup();
  } finally {
    if (frozen) await vm.thawFilesystems();
  }
  if (note) report({ type: 'log', message: `crash-consistent: ${note}` });
  return { consistency: frozen ? 'application' : 'crash', consistencyNote: note };
}

/** Step 3 for one disk: the temporary, the filter over the disk, the device on it, the view. */
async function insertFilter(vm: VmProcess, p: DiskPlan): Promise<void> {
  const m = vm.monitor;
  const size = await nodeSize(m, p.nodes.format);
  // Sparse: it takes room only for the blocks the guest overwrites while the view is read.
  fs.writeFileSync(p.tmpFile, '');
  fs.truncateSync(p.tmpFile, size);
  await blockdevAdd(m, { driver: 'file', 'node-name': p.tmp, filename: p.tmpFile, discard: 'unmap' });
  await blockdevAdd(m, copyBeforeWriteOptions(p.cbw, p.nodes.format, p.tmp));
  await setDeviceDrive(m, p.nodes.device, p.cbw);
  await blockdevAdd(m, snapshotAccessOptions(p.snap, p.cbw));
}

/**
 * Takes down every piece of a view that is there (idempotent, each step on its own):
 * exports, NBD server, snapshot-access nodes, the device back on its disk, filters,
 * temporaries, the view bitmap. A step that fails is logged; the guest runs on either way.
 */
async function teardown(
  vm: VmProcess,
  plans: readonly DiskPlan[],
  prefix: string,
  socket: string | null,
  log: Logger,
): Promise<void> {
  const m = vm.monitor;
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (err) {
      log.warn({ vm: vm.id, err: (err as Error).message }, `view teardown: ${what}`);
    }
  };
  const ours = new Set(plans.map((p) => p.exportId));
  const open = (await blockExportIds(m).catch(() => [] as string[])).filter((id) => ours.has(id));
  for (const id of open) await step(`export ${id}`, () => blockExportDel(m, id));
  // Exports end once their clients are gone: the nodes under them cannot go before.
  const until = Date.now() + 30_000;
  while (open.length && Date.now() < until) {
    const left = (await blockExportIds(m).catch(() => [] as string[])).filter((id) => ours.has(id));
    if (left.length === 0) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (socket) {
    await step('NBD server', () => nbdServerStop(m));
    fs.rmSync(socket, { force: true });
  }
  const nodes = new Set(await blockNodeNames(m));
  for (const p of plans) {
    if (nodes.has(p.snap)) await step(`node ${p.snap}`, () => blockdevDel(m, p.snap));
    if (nodes.has(p.cbw)) {
      await step(`device ${p.nodes.device} back on ${p.nodes.format}`, () =>
        setDeviceDrive(m, p.nodes.device, p.nodes.format),
      );
      await step(`node ${p.cbw}`, () => blockdevDel(m, p.cbw));
    }
    if (nodes.has(p.tmp)) await step(`node ${p.tmp}`, () => blockdevDel(m, p.tmp));
    fs.rmSync(p.tmpFile, { force: true });
    if (p.source.format === 'qcow2') {
      const bitmaps = await dirtyBitmaps(m, p.nodes.format).catch(() => []);
      if (bitmaps.some((b) => b.name === viewBitmap(prefix)))
        await step('view bitmap', () => removeDirtyBitmap(m, p.nodes.format, viewBitmap(prefix)));
    }
  }
}
