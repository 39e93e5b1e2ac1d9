/**
 * Which chunks of a disk an incremental backup reads (pure): those any dirty extent touches. An
 * extent that ends inside a chunk makes the whole chunk read, since a chunk is stored whole;
 * so the chunk size, against the bitmap's granularity, is what decides the read amplification.
 */
import type { Extent } from './nbd/block-status.ts';
import { STATE_DIRTY } from './nbd/protocol.ts';

/** Chunk indices, ascending, touched by the extents flagged dirty. */
export function changedChunks(extents: readonly Extent[], chunkSize: number): number[] {
  const out: number[] = [];
  for (const e of extents) {
    if (!(e.flags & STATE_DIRTY) || e.length <= 0) continue;
    const first = Math.floor(e.offset / chunkSize);
    const last = Math.floor((e.offset + e.length - 1) / chunkSize);
    for (let i = Math.max(first, out.length ? out.at(-1)! + 1 : 0); i <= last; i++) out.push(i);
  }
  return out;
}
