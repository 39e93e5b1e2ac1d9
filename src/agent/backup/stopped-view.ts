/**
 * The point-in-time view of a VM that does not run (./view.ts), for a backup or a replication
 * cycle: its images read through `qemu-nbd --read-only`, the same bitmap rotation as a running
 * VM's done with `qemu-img bitmap` (../qemu/running-view.ts tells the steps). Nothing writes to
 * a stopped VM's disks, so the view is the image itself and consistent; qemu-img refuses an
 * image some QEMU holds, so a VM started meanwhile elsewhere fails the reader instead of being
 * read mid-write. qemu-nbd serves one client (./qemu-nbd.ts): an agent killed mid-read leaves
 * no server holding the image.
 */
import path from 'node:path';
import { type Pools, statVolume } from '../storage/pools.ts';
import { tool } from '../storage/volumes.ts';
import { type BitmapFacts, bitmapDistrust, ownBitmaps, viewBitmap } from './bitmap-trust.ts';
import type { NbdClient } from './nbd/client.ts';
import { nbdDiskView } from './nbd-view.ts';
import { type ServedImage, serveImage } from './qemu-nbd.ts';
import type { DiskView, ViewRequest, VmView } from './view.ts';

/** The same granularity as a running VM's bitmaps (../qemu/running-view.ts). */
const GRANULARITY = 64 * 1024;

interface ImageBitmap {
  name: string;
  flags: string[];
}

/**
 * Takes the view `req` asks for, gives it to `use`, and ends it whatever happened; on `use`'s
 * success only the new bitmap stays. Answers what `use` answered.
 */
export async function withStoppedView<T>(
  pools: Pools,
  req: ViewRequest,
  signal: AbortSignal,
  use: (view: VmView) => Promise<T>,
): Promise<T> {
  const fresh = `${req.bitmap}-${req.point}`;
  const view = viewBitmap(req.bitmap);
  const clients: NbdClient[] = [];
  const servers: ServedImage[] = [];
  const olds: { file: string; names: string[] }[] = [];
  const views: DiskView[] = [];
  const withView: string[] = [];
  // qemu-img bitmap OPERATIONS FILE BITMAP; a cleanup runs also when the reader was cancelled.
  const img = (file: string, ops: string[], bitmap: string, cleanup = false) =>
    tool(
      'qemu-img',
      ['bitmap', ...ops, file, bitmap],
      `qemu-img bitmap of ${path.basename(file)}`,
      cleanup ? undefined : signal,
    );
  try {
    for (const d of req.disks) {
      // not_found, named as the caller named it, for a volume that is not there.
      const { file } = statVolume(pools, d.volume);
      let distrust: string | null = null;
      let useBitmap = false;
      if (d.format === 'qcow2') {
        // Without -U: an image some QEMU holds is refused here, before anything changes.
        const info = JSON.parse(
          await tool(
            'qemu-img',
            ['info', '--output=json', '-f', 'qcow2', file],
            `qemu-img info of ${d.name}`,
            signal,
          ),
        ) as { 'format-specific'?: { data?: { bitmaps?: ImageBitmap[] } } };
        const found = info['format-specific']?.data?.bitmaps ?? [];
        if (found.some((b) => b.name === view)) await img(file, ['--remove'], view);
        // In an image no QEMU has open, `in-use` means the last one ended without storing it.
        const facts: BitmapFacts[] = ownBitmaps(found, req.bitmap).map((b) => ({
          name: b.name,
          persistent: true,
          inconsistent: b.flags.includes('in-use'),
        }));
        distrust = bitmapDistrust(facts, req.bitmap, req.previous);
        for (const b of facts.filter((b) => b.inconsistent)) await img(file, ['--remove'], b.name);
        const own = facts.filter((b) => !b.inconsistent).map((b) => b.name);
        if (own.includes(fresh)) await img(file, ['--enable'], fresh);
        else await img(file, ['--add', '-g', String(GRANULARITY)], fresh);
        for (const name of own) if (name !== fresh) await img(file, ['--disable'], name);
        olds.push({ file, names: own.filter((n) => n !== fresh) });
        useBitmap = req.previous !== null && distrust === null;
        if (useBitmap) {
          await img(file, ['--add', '--disable', '-g', String(GRANULARITY)], view);
          withView.push(file);
          for (const name of own) await img(file, ['--merge', name], view);
        }
      }
      const served = await serveImage(file, {
        format: d.format,
        readOnly: true,
        ...(useBitmap ? { bitmap: view } : {}),
      });
      servers.push(served);
      const { view: v, client } = await nbdDiskView({
        name: d.name,
        format: d.format,
        socket: served.socket,
        exportName: served.exportName,
        bitmap: useBitmap ? view : null,
        bitmapDistrust: distrust,
      });
      clients.push(client);
      views.push(v);
    }
    // Nothing writes a stopped VM's images: any instant of the view is its instant.
    const result = await use({
      takenAt: new Date().toISOString(),
      consistency: 'crash',
      consistencyNote: 'stopped VM: consistent',
      disks: views,
    });
    await release(clients, servers);
    // Only the new bitmap is needed from now on.
    for (const o of olds)
      for (const name of o.names) await img(o.file, ['--remove'], name, true).catch(() => {});
    return result;
  } finally {
    await release(clients, servers);
    for (const file of withView) await img(file, ['--remove'], view, true).catch(() => {});
  }
}

/** Disconnects the clients and ends their servers, so the images are free again. */
async function release(clients: NbdClient[], servers: ServedImage[]): Promise<void> {
  for (const c of clients.splice(0)) await c.disconnect();
  for (const s of servers.splice(0)) await s.close();
}
