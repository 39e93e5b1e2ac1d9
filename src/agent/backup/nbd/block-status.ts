/**
 * A block status chunk read and checked (pure): which metadata context it is for, and the extents
 * it describes from the request's offset on. Every extent is non-empty; all but the last end
 * before the request does; the last may run past it and is cut at the request's end. A server
 * may describe less than was asked; the caller asks again from where the reply stopped.
 */

import { MAX_EXTENTS_PER_CHUNK } from './protocol.ts';
import { ProtocolViolation } from './read-reply.ts';

export interface Extent {
  offset: number;
  length: number;
  flags: number;
}

/** The largest block status payload Tern accepts (the protocol's advice to servers). */
export const MAX_BLOCK_STATUS_PAYLOAD = 4 + 8 * MAX_EXTENTS_PER_CHUNK;

export function decodeBlockStatus(
  payload: Buffer,
  offset: number,
  length: number,
): { contextId: number; extents: Extent[] } {
  if (payload.length < 12 || (payload.length - 4) % 8 !== 0)
    throw new ProtocolViolation(`block status chunk of ${payload.length} bytes`);
  const contextId = payload.readUInt32BE(0);
  const extents: Extent[] = [];
  const end = offset + length;
  let at = offset;
  for (let p = 4; p < payload.length; p += 8) {
    if (at >= end) throw new ProtocolViolation('block status describes extents past the end of the request');
    const size = payload.readUInt32BE(p);
    const flags = payload.readUInt32BE(p + 4);
    if (size === 0) throw new ProtocolViolation('block status extent of 0 bytes');
    const cut = Math.min(size, end - at);
    const last = extents.at(-1);
    // Consecutive extents with the same flags are one extent to whoever reads the disk.
    if (last && last.flags === flags) last.length += cut;
    else extents.push({ offset: at, length: cut, flags });
    at += cut;
  }
  return { contextId, extents };
}
