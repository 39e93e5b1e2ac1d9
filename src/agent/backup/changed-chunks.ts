/**
 * Which chunks of a disk a backup reads (pure): an incremental those any dirty extent touches,
 * a full one those any extent holding data touches (the others read as zeros). An extent that
 * ends inside a chunk makes the whole chunk read, since a chunk is stored whole; so the chunk
 * size, against the bitmap's granularity, is what decides the read amplification.
 */
import type { Extent } from './nbd/block-status.ts';
import { STATE_DIRTY, STATE_ZERO } from './nbd/protocol.ts';

/** Chunk indices, ascending, touched by the extents `wanted` picks by their flags. */
export function chunksTouched(
  extents: readonly Extent[],
  chunkSize: number,
  wanted: (flags: number) => boolean,
): number[] {
  const out: number[] = [];
  for (const e of extents) {
    if (!wanted(e.flags) || e.length <= 0) continue;
    const first = Math.floor(e.offset / chunkSize);
    const last = Math.floor((e.offset + e.length - 1) / chunkSize);
    for (let i = Math.max(first, out.length ? out.at(-1)! + 1 : 0); i <= last; i++) out.push(i);
  }
  return out;
}

/** Chunk indices, ascending, touched by the extents flagged dirty (`qemu:dirty-bitmap:…`). */
export function changedChunks(extents: readonly Extent[], chunkSize: number): number[] {
  return chunksTouched(extents, chunkSize, (flags) => (flags & STATE_DIRTY) !== 0);
}

/**
 * Chunk indices, ascending, touched by extents that may hold data (`base:allocation`): only
 * an extent flagged zero is known to read as zeros.
 */
export function dataChunks(extents: readonly Extent[], chunkSize: number): number[] {
  return chunksTouched(extents, chunkSize, (flags) => (flags & STATE_ZERO) === 0);
}

/** The bytes of the extents `wanted` picks. */
export function bytesOf(extents: readonly Extent[], wanted: (flags: number) => boolean): number {
  return extents.reduce((sum, e) => sum + (wanted(e.flags) ? e.length : 0), 0);
}
