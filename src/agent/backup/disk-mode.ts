/**
 * Whether a disk's backup may be incremental, or must read the disk whole and say why (pure).
 * An incremental copies the names of unchanged chunks from the previous backup's index, so it is
 * only right when that index covers the same disk the same way and the dirty bitmap saw every
 * write since that backup: a wrong "incremental" would be a backup that silently restores old
 * bytes, the worst failure a backup can have.
 */

export type DiskMode = { mode: 'incremental' } | { mode: 'full'; reason: string | null };

export interface DiskModeFacts {
  /** The backup an incremental would build on (null: this is the first). */
  previous: string | null;
  /** The previous backup's record of this disk; a string says why it cannot be used. */
  previousDisk: { size: number; chunkSize: number } | string;
  size: number;
  chunkSize: number;
  format: 'qcow2' | 'raw';
  /** Why the dirty bitmap since the previous backup cannot be trusted; null when it can. */
  bitmapDistrust: string | null;
}

export function diskMode(f: DiskModeFacts): DiskMode {
  if (f.previous === null) return { mode: 'full', reason: null };
  const full = (reason: string): DiskMode => ({ mode: 'full', reason });
  if (typeof f.previousDisk === 'string') return full(f.previousDisk);
  if (f.format !== 'qcow2')
    return full(`the disk is ${f.format}: only qcow2 keeps a persistent dirty bitmap`);
  if (f.previousDisk.chunkSize !== f.chunkSize)
    return full(`backup ${f.previous} used ${f.previousDisk.chunkSize}-byte chunks, this one ${f.chunkSize}`);
  if (f.previousDisk.size !== f.size)
    return full(`the disk was ${f.previousDisk.size} bytes at backup ${f.previous}, now ${f.size}`);
  if (f.bitmapDistrust !== null) return full(f.bitmapDistrust);
  return { mode: 'incremental' };
}
