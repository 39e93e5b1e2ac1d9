/**
 * What a replication cycle sends of one disk (pure): incremental, the extents its dirty bitmap
 * marks; whole (the first point, or a bitmap that cannot be trusted), every extent: those
 * `base:allocation` says may hold data as data, the others as zeroes, so the point is whole
 * even on top of an older one. An interrupted initial copy resumes: what lies below the
 * replica's resume offset arrived already.
 */
import { diskMode } from '../backup/disk-mode.ts';
import type { Extent } from '../backup/nbd/block-status.ts';
import { STATE_DIRTY, STATE_ZERO } from '../backup/nbd/protocol.ts';

/** The granularity of a replication's dirty bitmaps, as backup's (../qemu/running-view.ts). */
export const REPLICATION_GRANULE = 64 * 1024;

export interface SendRange {
  offset: number;
  length: number;
  /** Known to read as zeroes: sent as a zeroes frame, never read. */
  zero: boolean;
}

export interface DiskSendFacts {
  /** The point this one builds on; null: the initial copy. */
  previous: string | null;
  size: number;
  format: 'qcow2' | 'raw';
  bitmapDistrust: string | null;
}

export type SendMode = { mode: 'incremental' } | { mode: 'full'; reason: string | null };

/**
 * Incremental only when backup's rules would read the disk incrementally: a previous point, a
 * qcow2 disk, its bitmaps trusted. A size change needs no full copy: the bitmap marks writes
 * into a grown disk, and what lies past the base's end reads as zeroes on both sides.
 */
export function sendMode(f: DiskSendFacts): SendMode {
  const same = { size: f.size, chunkSize: REPLICATION_GRANULE };
  return diskMode({
    previous: f.previous,
    previousDisk: same,
    size: f.size,
    chunkSize: REPLICATION_GRANULE,
    format: f.format,
    bitmapDistrust: f.bitmapDistrust,
  });
}

/**
 * The ranges to send, in increasing offsets: from dirty extents (`incremental`) the dirty ones,
 * from allocation extents (`full`) all of them, zero where flagged zero; nothing below `from`;
 * neighbours of one kind joined, data ranges cut at `maxRun` bytes (one read, one frame).
 */
export function sendRanges(
  extents: readonly Extent[],
  mode: 'incremental' | 'full',
  from: number,
  maxRun: number,
): SendRange[] {
  const out: SendRange[] = [];
  for (const e of extents) {
    if (mode === 'incremental' && (e.flags & STATE_DIRTY) === 0) continue;
    const zero = mode === 'full' && (e.flags & STATE_ZERO) !== 0;
    const start = Math.max(e.offset, from);
    const end = e.offset + e.length;
    if (end <= start) continue;
    const last = out.at(-1);
    if (last && last.zero === zero && last.offset + last.length === start) last.length += end - start;
    else out.push({ offset: start, length: end - start, zero });
  }
  return out.flatMap((r) => {
    if (r.zero || r.length <= maxRun) return [r];
    const parts: SendRange[] = [];
    for (let at = r.offset; at < r.offset + r.length; at += maxRun)
      parts.push({ offset: at, length: Math.min(maxRun, r.offset + r.length - at), zero: false });
    return parts;
  });
}

/**
 * What a resumed initial copy sends of one disk: everything from `from` on, as a whole copy
 * would, and below `from` what changed since the interrupted copy's view (its bitmap, named
 * after the point, has recorded every write since). Without the second part the point would
 * hold the disk of two instants; with it, the whole disk of this view's.
 */
export function resumeRanges(
  dirty: readonly Extent[],
  allocation: readonly Extent[],
  from: number,
  maxRun: number,
): SendRange[] {
  const below = dirty
    .filter((e) => e.offset < from)
    .map((e) => ({ ...e, length: Math.min(e.length, from - e.offset) }));
  return [...sendRanges(below, 'incremental', 0, maxRun), ...sendRanges(allocation, 'full', from, maxRun)];
}

/** Whether this cycle resumes an interrupted initial copy (some disk has data there already). */
export const resumes = (previous: string | null, resume: readonly { offset: number }[]): boolean =>
  previous === null && resume.some((r) => r.offset > 0);
