/**
 * Writes a backup into a datastore from a point-in-time view of a VM's disks, whatever made
 * the view (QEMU's copy-before-write over NBD, qemu-nbd on a stopped VM's image, the sim's
 * disks): each disk read whole (only the chunks that may hold data) or incrementally (only the
 * chunks its dirty bitmap touches, the rest named as in the previous backup), chunks inserted
 * (deduplicated) as they are read, then the indexes and the manifest. Nothing is a backup
 * until its manifest is written; a failure or cancel before leaves no manifest.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Datastore } from '../../backup/datastore/datastore.ts';
import { FixedIndex } from '../../backup/datastore/fixed-index.ts';
import { type Manifest, sha256Hex } from '../../backup/datastore/manifest.ts';
import { TernError } from '../../errors.ts';
import type { BackupDiskResult, BackupVmReport, BackupVmRequest, BackupVmResult } from '../../wire/backup.ts';
import { Bandwidth } from './bandwidth.ts';
import { bytesOf, changedChunks, dataChunks } from './changed-chunks.ts';
import { openDatastore } from './datastore-handlers.ts';
import { diskMode } from './disk-mode.ts';
import { diskProgress } from './disk-progress.ts';
import { STATE_DIRTY, STATE_ZERO } from './nbd/protocol.ts';
import type { DiskView, ViewRequest, VmView } from './view.ts';
import { isZero } from './zero-bytes.ts';

/** Inserts at once while the next chunk is read: zstd, encryption and the write overlap the read. */
const INSERTS_IN_FLIGHT = 4;
/** Neighbouring chunks to read are read together, up to this much at once. */
const READ_RUN_BYTES = 4 * 1024 * 1024;

/**
 * Opens the datastore a backup goes to, before any view is taken: a wrong key, or a backup id
 * that is taken already, then costs nothing and touches no bitmap.
 */
export async function openForBackup(req: BackupVmRequest): Promise<Datastore> {
  const names = new Set(req.disks.map((d) => d.name));
  const volumes = new Set(req.disks.map((d) => `${d.volume.pool}:${d.volume.path}`));
  if (names.size !== req.disks.length || volumes.size !== req.disks.length)
    throw new TernError('invalid_request', 'each disk of a backup needs its own name and its own volume');
  const ds = await openDatastore(req.datastore);
  const taken = await ds.readManifest(req.group, req.id).then(
    () => true,
    () => false,
  );
  if (taken) throw new TernError('conflict', `backup ${req.group}/${req.id} exists already`);
  return ds;
}

/** The view a backup reads: its bitmaps named after the backup's id. */
export function backupView(req: BackupVmRequest): ViewRequest {
  return { disks: req.disks, bitmap: req.bitmap, point: req.id, previous: req.previous, freeze: req.freeze };
}

export async function writeBackup(
  ds: Datastore,
  req: BackupVmRequest,
  view: VmView,
  report: (r: BackupVmReport) => void,
  signal: AbortSignal,
): Promise<BackupVmResult> {
  const previous = await previousManifest(ds, req);
  const limiter = new Bandwidth(req.bandwidth);
  const disks: { name: string; index: FixedIndex }[] = [];
  const results: BackupDiskResult[] = [];
  for (const disk of view.disks) {
    const { index, result } = await backUpDisk(ds, req, disk, previous, limiter, report, signal);
    disks.push({ name: disk.name, index });
    results.push(result);
  }
  if (signal.aborted) throw new TernError('cancelled', `backup ${req.group}/${req.id} was cancelled`);
  const manifest = await ds.commitBackup(req.group, req.id, disks, req.labels);
  const file = path.join(ds.dir, 'backups', req.group, req.id, 'manifest.json');
  return {
    group: req.group,
    id: req.id,
    createdAt: manifest.createdAt,
    consistency: view.consistency,
    consistencyNote: view.consistencyNote,
    disks: results,
    manifestSha256: sha256Hex(await fs.readFile(file)),
  };
}

/** The previous backup's manifest, or why it cannot be built on. */
async function previousManifest(ds: Datastore, req: BackupVmRequest): Promise<Manifest | string | null> {
  if (req.previous === null) return null;
  try {
    return await ds.readManifest(req.group, req.previous);
  } catch (err) {
    return `the previous backup ${req.group}/${req.previous} cannot be read: ${(err as Error).message}`;
  }
}

async function backUpDisk(
  ds: Datastore,
  req: BackupVmRequest,
  disk: DiskView,
  previous: Manifest | string | null,
  limiter: Bandwidth,
  report: (r: BackupVmReport) => void,
  signal: AbortSignal,
): Promise<{ index: FixedIndex; result: BackupDiskResult }> {
  const entry =
    typeof previous === 'string' || previous === null
      ? (previous ?? '')
      : (previous.disks.find((d) => d.name === disk.name) ??
        `the previous backup ${req.group}/${req.previous} has no ${disk.name}`);
  let mode = diskMode({
    previous: req.previous,
    previousDisk: typeof entry === 'string' ? entry : { size: entry.size, chunkSize: entry.chunkSize },
    size: disk.size,
    chunkSize: req.chunkSize,
    format: disk.format,
    bitmapDistrust: disk.bitmapDistrust,
  });
  let base: FixedIndex | undefined;
  if (mode.mode === 'incremental') {
    try {
      base = await ds.readIndex(previous as Manifest, disk.name);
    } catch (err) {
      mode = {
        mode: 'full',
        reason: `the index of ${disk.name} in ${req.previous} cannot be read: ${(err as Error).message}`,
      };
    }
  }
  if (mode.mode === 'full' && mode.reason)
    report({ type: 'log', message: `${disk.name}: read whole: ${mode.reason}` });

  const index = new FixedIndex(disk.size, req.chunkSize, base);
  let todo: number[];
  let dirtyBytes: number;
  if (base) {
    const extents = await disk.dirty();
    todo = changedChunks(extents, req.chunkSize);
    dirtyBytes = bytesOf(extents, (f) => (f & STATE_DIRTY) !== 0);
  } else {
    const extents = await disk.allocation();
    todo = dataChunks(extents, req.chunkSize);
    dirtyBytes = bytesOf(extents, (f) => (f & STATE_ZERO) === 0);
  }
  const counts = { chunks: index.count, newChunks: 0, newBytes: 0, readBytes: 0 };
  const zeros = new ZeroChunks(ds, counts);
  if (!base) {
    // Chunks the allocation says read as zeros are named without being read.
    const read = new Set(todo);
    for (let i = 0; i < index.count; i++)
      if (!read.has(i)) index.setDigest(i, await zeros.digest(index.range(i).length));
  }

  const totalBytes = todo.reduce((sum, i) => sum + index.range(i).length, 0);
  const progress = diskProgress(report, disk.name, totalBytes, () => ({
    doneBytes: counts.readBytes,
    writtenBytes: counts.newBytes,
    rateBytes: counts.readBytes,
  }));
  progress(true);
  const inFlight = new Set<Promise<void>>();
  let failed: unknown = null;
  const insertOne = async (i: number, data: Buffer, length: number) => {
    counts.readBytes += length;
    const insert = (async () => {
      const digest = isZero(data) ? await zeros.digest(length) : await insertChunk(ds, data, counts);
      index.setDigest(i, digest);
    })().catch((err) => {
      failed ??= err;
    });
    inFlight.add(insert);
    insert.finally(() => inFlight.delete(insert));
    if (inFlight.size >= INSERTS_IN_FLIGHT) await Promise.race(inFlight);
    await limiter.after(length, signal);
    progress();
  };
  for (let next = 0; next < todo.length; ) {
    if (signal.aborted) throw new TernError('cancelled', `backup ${req.group}/${req.id} was cancelled`);
    if (failed) throw failed;
    // Neighbouring chunks are read in one request: small chunks cost no more round trips to
    // the NBD server than large ones.
    let last = next;
    while (
      last + 1 < todo.length &&
      todo[last + 1] === todo[last]! + 1 &&
      (last + 2 - next) * req.chunkSize <= READ_RUN_BYTES
    )
      last++;
    const first = index.range(todo[next]!);
    const end = index.range(todo[last]!);
    const run = await disk.read(first.offset, end.offset + end.length - first.offset);
    if (run.length !== end.offset + end.length - first.offset)
      throw new TernError(
        'storage_error',
        `${disk.name}: read ${run.length} bytes at ${first.offset}, not ${end.offset + end.length - first.offset}`,
      );
    for (; next <= last; next++) {
      const i = todo[next]!;
      const { offset, length } = index.range(i);
      const data = run.subarray(offset - first.offset, offset - first.offset + length);
      await insertOne(i, data, length);
    }
  }
  await Promise.all(inFlight);
  if (failed) throw failed;
  progress(true);
  return {
    index,
    result: {
      name: disk.name,
      sizeBytes: disk.size,
      mode: base ? 'incremental' : 'full',
      fullReason: mode.mode === 'full' ? mode.reason : null,
      dirtyBytes,
      readBytes: counts.readBytes,
      chunks: counts.chunks,
      newChunks: counts.newChunks,
      newBytes: counts.newBytes,
    },
  };
}

interface Counts {
  newChunks: number;
  newBytes: number;
}

async function insertChunk(ds: Datastore, data: Buffer, counts: Counts): Promise<string> {
  const r = await ds.chunks.insert(data);
  if (r.written) {
    counts.newChunks++;
    counts.newBytes += r.storedBytes;
  }
  return r.digest;
}

/** The name of a chunk of zeros of each length met, inserted once. */
class ZeroChunks {
  readonly #ds: Datastore;
  readonly #counts: Counts;
  readonly #names = new Map<number, Promise<string>>();

  constructor(ds: Datastore, counts: Counts) {
    this.#ds = ds;
    this.#counts = counts;
  }

  digest(length: number): Promise<string> {
    let name = this.#names.get(length);
    if (!name) {
      name = insertChunk(this.#ds, Buffer.alloc(length), this.#counts);
      this.#names.set(length, name);
    }
    return name;
  }
}
