/**
 * A cheap check of a qcow2 disk before a VM starts on it: its header, and that every table the
 * header names (and every table those point to) lies inside the file. A file cut short or a
 * header QEMU already marked corrupt is refused with a clear reason, instead of a VM that
 * boots into I/O errors while Tern says `running`.
 *
 * Why not `qemu-img check`: its time grows with the image's allocated size (it reads every L2
 * table and refcount block), a start must not wait minutes for a big disk, and `qemu-img info`
 * opens a truncated overlay without complaint. This reads the header, the L1 table and the
 * refcount table only: kilobytes for ordinary disks, at most 40 MiB by QEMU's own limits.
 * Damage deeper inside (an L2 table) is QEMU's to find at run time; it says so with a
 * BLOCK_IMAGE_CORRUPTED event, which raises an alert.
 */
import fs from 'node:fs/promises';

export interface Qcow2Header {
  version: number;
  clusterBytes: number;
  /** Incompatible feature bits (version 3); bit 1: QEMU marked the image corrupt. */
  incompatible: bigint;
  l1: { offset: number; entries: number };
  refcountTable: { offset: number; bytes: number };
  snapshots: { offset: number; count: number };
  backingFile: { offset: number; bytes: number };
}

const magic = 0x514649fb; // "QFI\xfb"
const corruptBit = 2n;
/** QEMU's own limits (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): more is a forged header. */
const maxL1Bytes = 32 * 1024 * 1024;
const maxRefcountTableBytes = 8 * 1024 * 1024;
/** Bits 9-55 of an L1 or refcount table entry hold the offset of the table it points to. */
const offsetMask = 0x00ff_ffff_ffff_fe00n;

/** The bytes a header takes at most (version 3 with extensions stays within its first cluster). */
export const headerBytes = 4096;

/** Parses the fixed part of a qcow2 header; a string says why it is not one. */
export function parseQcow2Header(buf: Buffer): Qcow2Header | string {
  if (buf.length < 72 || buf.readUInt32BE(0) !== magic) return 'it has no qcow2 header';
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) return `its qcow2 header has an unknown version ${version}`;
  const clusterBits = buf.readUInt32BE(20);
  if (clusterBits < 9 || clusterBits > 21)
    return `its qcow2 header has an impossible cluster size 2^${clusterBits}`;
  const clusterBytes = 2 ** clusterBits;
  const big = (at: number) => Number(buf.readBigUInt64BE(at));
  if (version === 3 && buf.length < 104) return 'its qcow2 header is cut short';
  return {
    version,
    clusterBytes,
    incompatible: version === 3 ? buf.readBigUInt64BE(72) : 0n,
    backingFile: { offset: big(8), bytes: buf.readUInt32BE(16) },
    l1: { offset: big(40), entries: buf.readUInt32BE(36) },
    refcountTable: { offset: big(48), bytes: buf.readUInt32BE(56) * clusterBytes },
    snapshots: { offset: big(64), count: buf.readUInt32BE(60) },
  };
}

/** What is wrong with the header's view of a file of `fileBytes` bytes, or null. */
export function headerProblem(h: Qcow2Header, fileBytes: number): string | null {
  if (h.incompatible & corruptBit)
    return 'QEMU marked it corrupt when it last ran (qemu-img check -r all may repair it)';
  const l1Bytes = h.l1.entries * 8;
  if (l1Bytes > maxL1Bytes) return `its L1 table of ${l1Bytes} bytes is larger than QEMU allows`;
  if (h.refcountTable.bytes > maxRefcountTableBytes || h.refcountTable.bytes === 0)
    return `its refcount table of ${h.refcountTable.bytes} bytes is impossible`;
  const tables: [string, number, number][] = [
    ['refcount table', h.refcountTable.offset, h.refcountTable.bytes],
    ['L1 table', h.l1.offset, l1Bytes],
    ['backing file name', h.backingFile.offset, h.backingFile.bytes],
    // Each snapshot header is at least 40 bytes.
    ['snapshot table', h.snapshots.offset, h.snapshots.count * 40],
  ];
  for (const [name, offset, bytes] of tables) {
    if (bytes > 0 && offset + bytes > fileBytes) return cutShort(name, offset, fileBytes);
  }
  return null;
}

/**
 * What is wrong with a table of 8-byte entries pointing at one-cluster tables (the L1 table at
 * L2 tables, the refcount table at refcount blocks), or null.
 */
export function tableProblem(
  name: string,
  table: Buffer,
  clusterBytes: number,
  fileBytes: number,
): string | null {
  for (let at = 0; at + 8 <= table.length; at += 8) {
    const offset = Number(table.readBigUInt64BE(at) & offsetMask);
    if (offset === 0) continue;
    if (offset % clusterBytes !== 0)
      return `entry ${at / 8} of its ${name} points inside a cluster (${offset})`;
    if (offset + clusterBytes > fileBytes) return cutShort(`${name} entry ${at / 8}`, offset, fileBytes);
  }
  return null;
}

function cutShort(what: string, offset: number, fileBytes: number): string {
  return `it is cut short: its ${what} at byte ${offset} lies past the end of the ${fileBytes}-byte file`;
}

async function readAt(fd: fs.FileHandle, offset: number, bytes: number): Promise<Buffer> {
  const buf = Buffer.alloc(bytes);
  const { bytesRead } = await fd.read(buf, 0, bytes, offset);
  return buf.subarray(0, bytesRead);
}

/** Checks a qcow2 file as above; the problem in words, or null when its layout is sound. */
export async function qcow2Problem(file: string): Promise<string | null> {
  const fd = await fs.open(file, 'r');
  try {
    const fileBytes = (await fd.stat()).size;
    const h = parseQcow2Header(await readAt(fd, 0, headerBytes));
    if (typeof h === 'string') return h;
    const problem = headerProblem(h, fileBytes);
    if (problem) return problem;
    const l1 = await readAt(fd, h.l1.offset, h.l1.entries * 8);
    const refcounts = await readAt(fd, h.refcountTable.offset, h.refcountTable.bytes);
    return (
      tableProblem('L1 table', l1, h.clusterBytes, fileBytes) ??
      tableProblem('refcount table', refcounts, h.clusterBytes, fileBytes)
    );
  } finally {
    await fd.close();
  }
}
