/** Whether bytes read from a disk are all zeroes (a backup names them, a replication sends a zeroes frame). */
export function isZero(b: Buffer): boolean {
  // Compare in 64 KiB pieces against one buffer of zeros: no allocation per chunk.
  for (let at = 0; at < b.length; at += ZERO_PIECE.length) {
    const piece = b.subarray(at, Math.min(b.length, at + ZERO_PIECE.length));
    if (!piece.equals(ZERO_PIECE.subarray(0, piece.length))) return false;
  }
  return true;
}
const ZERO_PIECE = Buffer.alloc(64 * 1024);
