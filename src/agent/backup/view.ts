/**
 * A point-in-time view of a VM's disks, whatever makes it (QEMU's copy-before-write over NBD,
 * qemu-nbd on a stopped VM's image, the sim's disks) and whoever reads it (a backup into a
 * datastore, a replication cycle to a replica's host). A view rotates the VM's dirty bitmaps
 * of one prefix: `<prefix>-<point>` starts recording at the view's instant, the older ones
 * stop; their merge tells what changed since `<prefix>-<previous>`. The reader's success
 * keeps only the new bitmap; a failure keeps them all, and the next view merges them.
 */
import type { BackupDiskSource } from '../../wire/backup.ts';
import type { Extent } from './nbd/block-status.ts';

/** One disk as the view shows it, frozen at the view's instant. */
export interface DiskView {
  /** The disk's name in the backup or replica (`disk0`…). */
  name: string;
  size: number;
  format: 'qcow2' | 'raw';
  /** Why the dirty bitmap since the previous point cannot be trusted; null when it can. */
  bitmapDistrust: string | null;
  /** `base:allocation` extents over the whole disk: flagged zero reads as zeros. */
  allocation(): Promise<Extent[]>;
  /** Extents over the whole disk, flagged dirty where written since the previous point. */
  dirty(): Promise<Extent[]>;
  read(offset: number, length: number): Promise<Buffer>;
}

export interface VmView {
  /** The view's instant (ISO 8601), taken before any disk's: what it holds is no older. */
  takenAt: string;
  consistency: 'application' | 'crash';
  consistencyNote: string | null;
  disks: DiskView[];
}

/** What a view is taken of, and against which earlier point its bitmaps tell the changes. */
export interface ViewRequest {
  disks: readonly BackupDiskSource[];
  /** The bitmaps' prefix: `tern-bk-<8 hex>` (a datastore), `tern-rp-<8 hex>` (a replication). */
  bitmap: string;
  /** This view's id: its new bitmap is `<bitmap>-<point>`. */
  point: string;
  /** The point the dirty bitmaps should tell the changes since; null: the first, read whole. */
  previous: string | null;
  /** Freeze the guest's filesystems while the view is set up (a running VM with an agent). */
  freeze: boolean;
}

/** The log lines a view tells while it is taken. */
export type ViewLog = (line: { type: 'log'; message: string }) => void;
