/**
 * Imports disk images and ISOs into a pool: a host file or a staged upload is probed, checked
 * and converted to qcow2 (ISOs are copied as they are) into `<volume>.partial`, which is
 * renamed into place only when whole. Any failure removes the partial file.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asTernError, TernError } from '../../errors.ts';
import type { ImageSourceFormat, ImportedImage, ImportImageRequest } from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { fileSha256 } from './digest.ts';
import {
  assessProbe,
  checkable,
  checkProblem,
  convertProgress,
  descriptorExtents,
  extentProblem,
  isoVolumeBytes,
  mapLineEnd,
  openProblem,
  type QemuImgInfo,
  qemuFormat,
} from './image-check.ts';
import type { ImportSources } from './import-sources.ts';
import { type Pools, resolveVolume, statVolume } from './pools.ts';
import { qemuImg } from './qemu-img.ts';
import { poolUsage } from './volumes.ts';

export interface ImportHooks {
  signal: AbortSignal;
  step(name: string): void;
  /** Percent of the conversion or copy done. */
  progress(percent: number): void;
}

export interface ImportPlan {
  req: ImportImageRequest;
  dest: string;
  source: string;
  /** How messages name the source. */
  what: string;
  /** Where a multi-file VMDK's extents may be; null for uploads (one file). */
  extentDir: string | null;
  poolDir: string;
}

/** Destinations being written now, so two imports can never share a partial file. */
const active = new Set<string>();

/**
 * The checks that need no reading of the source; they fail before any work starts. A host path
 * must lie in one of the `sources` (see `ImportSources`); an upload is the agent's own file.
 */
export function planImport(pools: Pools, req: ImportImageRequest, sources: ImportSources): ImportPlan {
  if ((req.sourcePath === undefined) === (req.upload === undefined))
    throw new TernError('invalid_request', 'give either sourcePath or upload');
  if (req.kind === 'iso' && req.format !== undefined && req.format !== 'auto' && req.format !== 'raw')
    throw new TernError('invalid_request', 'an ISO has no disk format to give');
  if (req.kind === 'iso' && req.compress)
    throw new TernError('invalid_request', 'an ISO is stored as it is; only disks are compressed');
  const dest = resolveVolume(pools, req.volume);
  if (fs.existsSync(dest) || active.has(dest))
    throw new TernError('conflict', `volume ${req.volume.pool}:${req.volume.path} exists`);
  let source: string;
  let what: string;
  let extentDir: string | null;
  if (req.upload) {
    source = resolveVolume(pools, req.upload);
    what = 'the uploaded file';
    extentDir = null;
    if (!fs.existsSync(source))
      throw new TernError('not_found', `upload ${req.upload.pool}:${req.upload.path} does not exist`);
  } else {
    const given = req.sourcePath!;
    if (!path.isAbsolute(given)) throw new TernError('invalid_request', 'sourcePath must be absolute');
    what = given;
    source = sources.resolve(given);
    extentDir = path.dirname(source);
  }
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
    fs.accessSync(source, fs.constants.R_OK);
  } catch (err) {
    throw new TernError('invalid_request', `${what} cannot be read by the agent: ${(err as Error).message}`);
  }
  if (!st.isFile())
    throw new TernError(
      'invalid_request',
      `${what} is not a regular file (devices and directories are refused)`,
    );
  if (st.size === 0) throw new TernError('invalid_request', `${what} is empty`);
  return { req, dest, source, what, extentDir, poolDir: pools[req.volume.pool] };
}

/** Runs an import planned by `planImport`. */
export async function runImport(plan: ImportPlan, hooks: ImportHooks): Promise<ImportedImage> {
  if (active.has(plan.dest))
    throw new TernError('conflict', `volume ${plan.req.volume.path} is being imported`);
  active.add(plan.dest);
  const partial = `${plan.dest}.partial`;
  try {
    fs.rmSync(partial, { force: true });
    fs.mkdirSync(path.dirname(plan.dest), { recursive: true });
    const image =
      plan.req.kind === 'iso' ? await copyIso(plan, partial, hooks) : await convertDisk(plan, partial, hooks);
    hooks.signal.throwIfAborted();
    if (fs.existsSync(plan.dest))
      throw new TernError('conflict', `volume ${plan.req.volume.path} appeared during the import`);
    fs.renameSync(partial, plan.dest);
    return image;
  } catch (err) {
    throw hooks.signal.aborted ? new TernError('cancelled', 'the import was cancelled') : asTernError(err);
  } finally {
    fs.rmSync(partial, { force: true });
    active.delete(plan.dest);
  }
}

function refuse(plan: ImportPlan, problem: string): TernError {
  return new TernError('invalid_request', `${plan.what}: ${problem}`);
}

async function readHeader(file: string, bytes: number): Promise<Buffer> {
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.alloc(bytes);
    const { bytesRead } = await fh.read(buf, 0, bytes, 0);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

async function probe(plan: ImportPlan, requested: ImageSourceFormat, signal: AbortSignal) {
  const args = ['info', '-U', '--output=json'];
  if (requested !== 'auto') args.push('-f', qemuFormat[requested]);
  const r = await qemuImg([...args, plan.source], { signal, timeoutMs: 60_000, maxStdout: 1024 * 1024 });
  if (r.code !== 0) throw refuse(plan, openProblem(r.stderr, requested));
  let info: QemuImgInfo;
  try {
    info = JSON.parse(r.stdout) as QemuImgInfo;
  } catch {
    throw refuse(plan, 'qemu-img info gave no readable answer');
  }
  const found = assessProbe(info, plan.what, requested);
  return { found, actualBytes: typeof info['actual-size'] === 'number' ? info['actual-size'] : 0 };
}

/**
 * Every extent of a VMDK must be the file itself or (path imports) lie in its directory, which
 * is inside the import sources. Where an extent is named is checked before anything about it is
 * looked at, so a refusal never tells whether a file elsewhere exists, or its size.
 */
function checkExtents(plan: ImportPlan, extents: { file: string; format: string; virtualBytes: number }[]) {
  const real: string[] = [];
  for (const e of extents) {
    const file = path.resolve(path.dirname(plan.source), e.file);
    const named = extentProblem([file], plan.source, plan.extentDir);
    if (named) throw refuse(plan, named);
    let resolved: string;
    try {
      resolved = fs.realpathSync(file);
    } catch {
      throw refuse(plan, `VMDK extent file ${file} is missing`);
    }
    const problem = extentProblem([resolved], plan.source, plan.extentDir);
    if (problem) throw refuse(plan, problem);
    real.push(resolved);
    // A flat extent shorter than it claims would be read as zeros: a truncated file.
    if (e.format.toUpperCase() === 'FLAT' && fs.statSync(resolved).size < e.virtualBytes)
      throw refuse(
        plan,
        `it is truncated: VMDK extent ${resolved} is shorter than its ${e.virtualBytes} bytes`,
      );
  }
  return real.every((f) => f === plan.source);
}

/** Data that a format places beyond the end of the file means the file was cut short. */
async function checkNotTruncated(plan: ImportPlan, format: string, signal: AbortSignal): Promise<void> {
  const size = fs.statSync(plan.source).size;
  let end = 0;
  let rest = '';
  const r = await qemuImg(['map', '--output=json', '-f', format, plan.source], {
    signal,
    onStdout: (text) => {
      const lines = (rest + text).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) end = Math.max(end, mapLineEnd(l));
    },
  });
  end = Math.max(end, mapLineEnd(rest));
  if (r.code !== 0) throw refuse(plan, openProblem(r.stderr, 'auto'));
  if (end > size)
    throw refuse(plan, `it is truncated: its data reaches byte ${end} but the file ends at ${size}`);
}

async function convertDisk(plan: ImportPlan, partial: string, hooks: ImportHooks): Promise<ImportedImage> {
  const requested = plan.req.format ?? 'auto';
  hooks.step(`probing ${plan.what}`);
  if (requested === 'auto' && isoVolumeBytes(await readHeader(plan.source, 34816)) !== null)
    throw refuse(plan, 'it is an ISO 9660 image, not a disk image; import it as an ISO');
  // qemu-img opens a VMDK descriptor's extents to probe it, and its errors would tell whether
  // a file elsewhere exists: where they are named is checked first.
  for (const named of descriptorExtents(await readHeader(plan.source, 64 * 1024))) {
    const problem = extentProblem(
      [path.resolve(path.dirname(plan.source), named)],
      plan.source,
      plan.extentDir,
    );
    if (problem) throw refuse(plan, problem);
  }
  const { found, actualBytes } = await probe(plan, requested, hooks.signal);
  const singleFile = checkExtents(plan, found.extents);
  const size = fs.statSync(plan.source).size;
  if (found.format === 'raw' && size % 512 !== 0)
    throw refuse(
      plan,
      `a raw disk image is a whole number of 512-byte sectors, this has ${size} bytes (truncated?)`,
    );
  if (checkable.has(found.format)) {
    hooks.step(`checking the ${found.sourceFormat} image`);
    const r = await qemuImg(['check', '--output=json', '-f', found.format, plan.source], {
      signal: hooks.signal,
    });
    const problem = checkProblem(r.code, r.stdout, r.stderr);
    if (problem) throw refuse(plan, problem);
  }
  if (found.format !== 'raw' && singleFile) await checkNotTruncated(plan, found.format, hooks.signal);
  const free = (await poolUsage(plan.poolDir)).freeBytes;
  const needs = Math.min(actualBytes || size, found.virtualBytes);
  if (needs > free)
    throw new TernError(
      'unavailable',
      `pool ${plan.req.volume.pool} has ${free} bytes free, the image needs about ${needs}`,
    );

  // -c: compressed clusters (zlib); written once, read as usual, rewritten uncompressed on write.
  const compress = plan.req.compress === true;
  hooks.step(`converting ${found.sourceFormat} to ${compress ? 'compressed ' : ''}qcow2`);
  const args = ['convert', '-p', ...(compress ? ['-c'] : []), '-f', found.format, '-O', 'qcow2'];
  const r = await qemuImg([...args, plan.source, partial], {
    signal: hooks.signal,
    onStdout: (text) => {
      const p = convertProgress(text);
      if (p !== null) hooks.progress(p);
    },
  });
  if (r.code !== 0) {
    if (/No space left/i.test(r.stderr))
      throw new TernError(
        'storage_error',
        `pool ${plan.req.volume.pool} ran out of space during the conversion`,
      );
    throw refuse(plan, openProblem(r.stderr, requested));
  }
  const out = await qemuImg(['info', '--output=json', '-f', 'qcow2', partial], { signal: hooks.signal });
  const info = (out.code === 0 ? JSON.parse(out.stdout) : {}) as {
    'virtual-size'?: number;
    'actual-size'?: number;
  };
  if (info['virtual-size'] !== found.virtualBytes)
    throw new TernError('storage_error', `the converted image does not match ${plan.what}`);
  hooks.step('computing the SHA-256 of the stored image');
  const sha256 = await fileSha256(partial, hooks.signal);
  return {
    volume: plan.req.volume,
    format: 'qcow2',
    sourceFormat: found.sourceFormat,
    virtualBytes: found.virtualBytes,
    actualBytes: info['actual-size'] ?? 0,
    sha256,
  };
}

async function copy(
  from: fs.ReadStream,
  through: Transform,
  to: fs.WriteStream,
  signal: AbortSignal,
  pool: string,
): Promise<void> {
  try {
    await pipeline(from, through, to, { signal });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC')
      throw new TernError('storage_error', `pool ${pool} ran out of space during the copy`);
    throw err;
  }
}

async function copyIso(plan: ImportPlan, partial: string, hooks: ImportHooks): Promise<ImportedImage> {
  hooks.step(`checking the ISO ${plan.what}`);
  const size = fs.statSync(plan.source).size;
  const volumeBytes = isoVolumeBytes(await readHeader(plan.source, 34816));
  if (volumeBytes === null) throw refuse(plan, 'not an ISO 9660 image (no CD001 signature at byte 32769)');
  if (volumeBytes > size)
    throw refuse(plan, `it is truncated: its volume is ${volumeBytes} bytes but the file has ${size}`);
  if (size > (await poolUsage(plan.poolDir)).freeBytes)
    throw new TernError(
      'unavailable',
      `pool ${plan.req.volume.pool} has too little free space for ${size} bytes`,
    );
  hooks.step('copying the ISO');
  const hash = createHash('sha256');
  let copied = 0;
  await copy(
    fs.createReadStream(plan.source),
    new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        copied += chunk.length;
        hooks.progress((copied / size) * 100);
        done(null, chunk);
      },
    }),
    fs.createWriteStream(partial),
    hooks.signal,
    plan.req.volume.pool,
  );
  const st = fs.statSync(partial);
  return {
    volume: plan.req.volume,
    format: 'raw',
    sourceFormat: 'iso',
    virtualBytes: st.size,
    actualBytes: st.blocks * 512,
    sha256: hash.digest('hex'),
  };
}

/**
 * A library image's stored file, for re-hashing or sending back: only under `images/` of a
 * pool, and only a regular file.
 */
export function libraryFile(pools: Pools, ref: VolumeRef): { file: string; bytes: number } {
  if (!ref.path.startsWith('images/'))
    throw new TernError('invalid_request', 'only library images (images/ in a pool) are read here');
  const { file, st } = statVolume(pools, ref);
  if (!st.isFile()) throw new TernError('invalid_request', `${ref.pool}:${ref.path} is not a regular file`);
  return { file, bytes: st.size };
}
