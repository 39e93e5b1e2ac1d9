/**
 * The restore writer: one disk of a backup written onto a volume of this host, through
 * `qemu-nbd` (writable, unix socket) and Tern's NBD client. Every chunk is read verified (a
 * damaged or missing one fails the restore, named); chunks of zeroes are written as NBD
 * write-zeroes, which leaves holes in a qcow2 and costs no data; neighbouring chunks go out
 * as one write. The answer carries the SHA-256 of the whole disk as written, to compare with
 * what was backed up.
 */
import { createHash } from 'node:crypto';
import type { Datastore } from '../../backup/datastore/datastore.ts';
import type { FixedIndex } from '../../backup/datastore/fixed-index.ts';
import { asTernError, TernError } from '../../errors.ts';
import type { RestoreDiskResult, TransferProgress } from '../../wire/backup.ts';
import { NbdClient } from './nbd/client.ts';
import { serveImage } from './qemu-nbd.ts';

export interface RestoreOptions {
  group: string;
  id: string;
  disk: string;
  /** The target volume's file and format (made by the caller, at least as large as the disk). */
  file: string;
  format: 'qcow2' | 'raw';
  /** Bytes per second written; 0: no limit. */
  bandwidth: number;
  progress: (p: TransferProgress) => void;
  signal?: AbortSignal;
}

const ENOSPC = 28;
/** Data chunks are gathered into writes of about this size. */
const WRITE_BYTES = 8 * 1024 * 1024;
/** Bytes of chunks read (and decrypted, decompressed, hashed) ahead of the writes: 4 to 64 chunks. */
const READ_AHEAD_BYTES = 16 * 1024 * 1024;

export async function restoreDisk(ds: Datastore, o: RestoreOptions): Promise<RestoreDiskResult> {
  const manifest = await ds.readManifest(o.group, o.id);
  const index = await ds.readIndex(manifest, o.disk);
  const served = await serveImage(o.file, { format: o.format, readOnly: false });
  try {
    const nbd = await NbdClient.connect({ path: served.socket }, { exportName: served.exportName });
    try {
      if (nbd.size < index.diskSize)
        throw new TernError(
          'invalid_request',
          `target volume holds ${nbd.size} bytes, the backed-up disk ${o.disk} ${index.diskSize}`,
        );
      try {
        const result = await writeChunks(ds, index, nbd, o);
        await nbd.flush();
        return result;
      } catch (err) {
        if ((err as TernError).details?.errno !== ENOSPC) throw err;
        throw new TernError(
          'storage_error',
          `the storage of the target volume ${o.file} is full: ${o.disk} is only partly restored`,
          { full: true },
          { cause: err },
        );
      }
    } finally {
      await nbd.disconnect();
    }
  } finally {
    await served.close();
  }
}

async function writeChunks(
  ds: Datastore,
  index: FixedIndex,
  nbd: NbdClient,
  o: RestoreOptions,
): Promise<RestoreDiskResult> {
  const hash = createHash('sha256');
  const zeroNames = new Map<number, string>();
  const isZero = (i: number) => {
    const { length } = index.range(i);
    let name = zeroNames.get(length);
    if (name === undefined) {
      name = ds.chunks.digestOf(Buffer.alloc(length));
      zeroNames.set(length, name);
    }
    return index.digest(i) === name;
  };
  const read = (i: number) =>
    ds.readChunk(index, i).catch((err) => {
      const e = asTernError(err);
      throw new TernError(
        e.code,
        `restore of ${o.group}/${o.id} ${o.disk} needs chunk ${i}: ${e.message}`,
        { ...e.details, disk: o.disk, position: i },
        { cause: err },
      );
    });

  const started = Date.now();
  let written = 0;
  let reportedAt = 0;
  let run: { offset: number; parts: Buffer[]; bytes: number } | null = null;
  let zeroes: { offset: number; length: number } | null = null;
  const put = async () => {
    if (run) {
      const data = run.parts.length === 1 ? run.parts[0]! : Buffer.concat(run.parts);
      await nbd.write(run.offset, data);
      written += data.length;
      run = null;
      await throttle(o.bandwidth, written, started, o.signal);
    }
    if (zeroes) {
      await nbd.writeZeroes(zeroes.offset, zeroes.length);
      zeroes = null;
    }
  };

  const ahead: Promise<Buffer | null>[] = [];
  const fetch = (i: number) => {
    if (i >= index.count) return;
    const p = isZero(i) ? Promise.resolve(null) : read(i);
    // A read ahead that fails is awaited in its turn; it must not be unhandled meanwhile.
    p.catch(() => {});
    ahead.push(p);
  };
  const readAhead = Math.min(64, Math.max(4, Math.floor(READ_AHEAD_BYTES / index.chunkSize)));
  for (let i = 0; i < readAhead; i++) fetch(i);
  for (let i = 0; i < index.count; i++) {
    if (o.signal?.aborted) throw new TernError('cancelled', `restore of ${o.disk} cancelled`);
    fetch(i + readAhead);
    const data = await ahead.shift()!;
    const { offset, length } = index.range(i);
    if (data === null) {
      hash.update(zeroChunk(length));
      if (run) await put();
      if (zeroes) zeroes.length += length;
      else zeroes = { offset, length };
    } else {
      hash.update(data);
      if (zeroes || (run && run.bytes >= WRITE_BYTES)) await put();
      if (run) {
        run.parts.push(data);
        run.bytes += length;
      } else run = { offset, parts: [data], bytes: length };
    }
    const now = Date.now();
    if (now - reportedAt >= 1000 || i === index.count - 1) {
      reportedAt = now;
      o.progress({
        type: 'progress',
        item: o.disk,
        doneBytes: offset + length,
        totalBytes: index.diskSize,
        writtenBytes: written,
        bytesPerS: Math.round(((offset + length) * 1000) / Math.max(1, now - started)),
      });
    }
  }
  await put();
  return { sizeBytes: index.diskSize, writtenBytes: written, sha256: hash.digest('hex') };
}

let zeroBuffer = Buffer.alloc(0);
function zeroChunk(length: number): Buffer {
  if (zeroBuffer.length < length) zeroBuffer = Buffer.alloc(length);
  return zeroBuffer.subarray(0, length);
}

/** Waits as long as writing `bytes` since `started` is ahead of the limit. */
async function throttle(limit: number, bytes: number, started: number, signal?: AbortSignal): Promise<void> {
  if (limit <= 0) return;
  const due = started + (bytes * 1000) / limit - Date.now();
  if (due > 0) await new Promise((r) => setTimeout(r, Math.min(due, 10_000)));
  if (signal?.aborted) throw new TernError('cancelled', 'restore cancelled');
}
