/**
 * The HA statefile: a file on shared storage in which every host renews its storage lease, in
 * its own fixed-size slot. Agents write their slot; the manager reads all of them to tell a
 * host that is only cut off from the network (its counter still moves) from a dead one.
 *
 * Slot `n` is the 512 bytes at offset n×512; a slot never straddles a sector, so one write
 * replaces it whole on any storage with 512-byte sectors, and hosts never write the same bytes.
 * Big-endian layout:
 *
 *   0   4  magic "TRNH"
 *   4   2  version (1)
 *   6   2  flags (bit 0: the host fenced itself)
 *   8   8  counter, +1 on every renewal
 *   16  8  writer's wall time, ms since the epoch (for people and logs; nobody compares
 *          clocks of different hosts: the reader watches the counter move on its own clock)
 *   24  4  the writer's timeoutS
 *   28  1  host id length (1..200)
 *   29 200 host id, UTF-8
 *   229 .. 507  zero
 *   508 4  CRC32 of bytes 0..507, so a torn write or a foreign slot is detected
 */
import fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { TernError } from '../errors.ts';
import { maxStatefileSlots, type SlotRecord, type SlotState } from '../wire/ha.ts';

export type { SlotRecord, SlotState };

export const slotSize = 512;
export const maxSlots = maxStatefileSlots;
const magic = 0x54524e48; // "TRNH"
const version = 1;
const maxHostIdBytes = 200;
const hostIdOffset = 29;
const crcOffset = slotSize - 4;

export function encodeSlot(r: SlotRecord): Buffer {
  const id = Buffer.from(r.hostId, 'utf8');
  if (id.length < 1 || id.length > maxHostIdBytes) {
    throw new TernError('invalid_request', `host id must be 1 to ${maxHostIdBytes} bytes`);
  }
  if (!Number.isSafeInteger(r.counter) || r.counter < 0) {
    throw new TernError('invalid_request', 'lease counter must be a non-negative safe integer');
  }
  if (!Number.isInteger(r.timeoutS) || r.timeoutS < 0 || r.timeoutS > 0xffffffff) {
    throw new TernError('invalid_request', 'timeoutS out of range');
  }
  const b = Buffer.alloc(slotSize);
  b.writeUInt32BE(magic, 0);
  b.writeUInt16BE(version, 4);
  b.writeUInt16BE(r.fenced ? 1 : 0, 6);
  b.writeBigUInt64BE(BigInt(r.counter), 8);
  b.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(r.wallTimeMs))), 16);
  b.writeUInt32BE(r.timeoutS, 24);
  b.writeUInt8(id.length, 28);
  id.copy(b, hostIdOffset);
  b.writeUInt32BE(crc32(b.subarray(0, crcOffset)), crcOffset);
  return b;
}

/** Never throws: whatever the bytes are, they decode to a valid, empty or invalid slot. */
export function decodeSlot(slot: number, b: Buffer): SlotState {
  if (b.length === 0) return { slot, state: 'empty' };
  if (b.length < slotSize) return { slot, state: 'invalid', reason: 'truncated slot' };
  if (b.every((x) => x === 0)) return { slot, state: 'empty' };
  if (b.readUInt32BE(0) !== magic) return { slot, state: 'invalid', reason: 'not a Tern HA slot' };
  if (crc32(b.subarray(0, crcOffset)) !== b.readUInt32BE(crcOffset)) {
    return { slot, state: 'invalid', reason: 'checksum mismatch (torn or foreign write)' };
  }
  const v = b.readUInt16BE(4);
  if (v !== version) return { slot, state: 'invalid', reason: `unsupported slot version ${v}` };
  const counter = b.readBigUInt64BE(8);
  const wall = b.readBigUInt64BE(16);
  const idLen = b.readUInt8(28);
  if (counter > BigInt(Number.MAX_SAFE_INTEGER) || wall > BigInt(Number.MAX_SAFE_INTEGER)) {
    return { slot, state: 'invalid', reason: 'counter or time out of range' };
  }
  if (idLen < 1 || idLen > maxHostIdBytes) return { slot, state: 'invalid', reason: 'bad host id length' };
  let hostId: string;
  try {
    hostId = new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(hostIdOffset, hostIdOffset + idLen));
  } catch {
    return { slot, state: 'invalid', reason: 'host id is not UTF-8' };
  }
  return {
    slot,
    state: 'valid',
    record: {
      hostId,
      counter: Number(counter),
      wallTimeMs: Number(wall),
      timeoutS: b.readUInt32BE(24),
      fenced: (b.readUInt16BE(6) & 1) === 1,
    },
  };
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= maxSlots) {
    throw new TernError('invalid_request', `HA slot must be 0 to ${maxSlots - 1}`);
  }
}

/**
 * Writes one slot and returns only once it is on the storage. O_DSYNC rather than fsync: each
 * write returns after its data (and the size change when the file grows) is stable, in one
 * call, without also flushing unrelated metadata such as mtime; on NFS it makes the write a
 * stable FILE_SYNC write. O_DIRECT would also skip the page cache but needs sector-aligned
 * buffers, which Node does not promise. The file is opened for every write, so a storage path
 * that failed over is not written through a stale handle; an I/O error is a failed renewal.
 */
export async function writeSlot(file: string, slot: number, record: SlotRecord): Promise<void> {
  checkSlot(slot);
  const buf = encodeSlot(record);
  let h: fs.promises.FileHandle | undefined;
  try {
    h = await fs.promises.open(
      file,
      fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_DSYNC,
      0o644,
    );
    const { bytesWritten } = await h.write(buf, 0, slotSize, slot * slotSize);
    if (bytesWritten !== slotSize) throw new Error(`short write (${bytesWritten} of ${slotSize} bytes)`);
  } catch (err) {
    throw new TernError(
      'storage_error',
      `cannot write HA slot ${slot} of ${file}: ${(err as Error).message}`,
    );
  } finally {
    await h?.close().catch(() => {});
  }
}

/**
 * Reads the first `count` slots (at most maxSlots × 512 bytes). Slots beyond the end of the
 * file are empty. An unreadable file, including a missing one, throws: a reader that cannot
 * see the statefile must not take that for every lease being silent.
 */
export async function readSlots(file: string, count: number): Promise<SlotState[]> {
  if (!Number.isInteger(count) || count < 1 || count > maxSlots) {
    throw new TernError('invalid_request', `slot count must be 1 to ${maxSlots}`);
  }
  let h: fs.promises.FileHandle | undefined;
  let data: Buffer;
  try {
    // Opened afresh on every read: NFS revalidates its cache at open (close-to-open consistency).
    h = await fs.promises.open(file, 'r');
    const size = (await h.stat()).size;
    data = Buffer.alloc(Math.min(size, count * slotSize));
    let got = 0;
    while (got < data.length) {
      const { bytesRead } = await h.read(data, got, data.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    data = data.subarray(0, got);
  } catch (err) {
    throw new TernError('storage_error', `cannot read the HA statefile ${file}: ${(err as Error).message}`);
  } finally {
    await h?.close().catch(() => {});
  }
  const out: SlotState[] = [];
  for (let i = 0; i < count; i++) out.push(decodeSlot(i, data.subarray(i * slotSize, (i + 1) * slotSize)));
  return out;
}
