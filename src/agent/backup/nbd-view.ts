/**
 * A disk of a point-in-time view read over NBD, from QEMU's NBD server (a running VM's
 * snapshot-access node) or qemu-nbd (a stopped VM's image): its allocation and dirty extents
 * from the export's metadata contexts, its bytes from reads.
 */
import { NbdClient } from './nbd/client.ts';
import { BASE_ALLOCATION, dirtyBitmapContext } from './nbd/protocol.ts';
import type { DiskView } from './view.ts';

export interface NbdDisk {
  name: string;
  format: 'qcow2' | 'raw';
  /** The unix socket of the NBD server, and the export's name. */
  socket: string;
  exportName: string;
  /** The bitmap exported with it (null: none, the disk is read whole). */
  bitmap: string | null;
  bitmapDistrust: string | null;
}

/** Connects to the export; the caller disconnects the client when the backup is over. */
export async function nbdDiskView(d: NbdDisk): Promise<{ view: DiskView; client: NbdClient }> {
  const contexts = d.bitmap ? [BASE_ALLOCATION, dirtyBitmapContext(d.bitmap)] : [BASE_ALLOCATION];
  const client = await NbdClient.connect(
    { path: d.socket },
    { exportName: d.exportName, metaContexts: contexts },
  );
  const view: DiskView = {
    name: d.name,
    size: client.size,
    format: d.format,
    // No bitmap exported: nothing to build an incremental on.
    bitmapDistrust: d.bitmap ? d.bitmapDistrust : (d.bitmapDistrust ?? 'the disk has no dirty bitmap'),
    allocation: () => client.extents(BASE_ALLOCATION, 0, client.size),
    dirty: () => {
      if (!d.bitmap) throw new Error('no dirty bitmap exported');
      return client.extents(dirtyBitmapContext(d.bitmap), 0, client.size);
    },
    read: (offset, length) => client.read(offset, length),
  };
  return { view, client };
}
