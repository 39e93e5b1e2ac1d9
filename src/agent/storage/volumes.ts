/** Volume operations on a host's pools, through qemu-img and genisoimage. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TernError } from '../../errors.ts';
import type {
  CreateSeedRequest,
  CreateVolumeRequest,
  ImportVolumeRequest,
  ResizeVolumeRequest,
  VolumeInfo,
  VolumeSnapshotRequest,
} from '../../wire/agent.ts';
import { isTernBitmap } from '../../wire/replication.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { ovmf, ovmfPresent } from '../firmware.ts';
import { discardPartial, partialOf } from './partials.ts';
import { type Pools, resolveVolume, statVolume } from './pools.ts';

const run = promisify(execFile);

/**
 * Runs a storage tool (qemu-img, qemu-nbd…); `signal` (its caller gone) kills it; a failure is
 * a storage_error with the tail of its stderr.
 */
export async function tool(cmd: string, args: string[], what: string, signal?: AbortSignal): Promise<string> {
  try {
    return (await run(cmd, args, { maxBuffer: 16 * 1024 * 1024, signal, killSignal: 'SIGKILL' })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string; code?: string };
    if (e.code === 'ABORT_ERR') throw new TernError('cancelled', `${what} was stopped: its caller went away`);
    if (e.code === 'ENOENT')
      throw new TernError('storage_error', `${cmd} is not installed (run tern doctor)`);
    const detail = (e.stderr ?? e.message).trim().split('\n').slice(-3).join(' ');
    throw new TernError('storage_error', `${what} failed: ${detail}`);
  }
}

export interface PoolUsage {
  totalBytes: number;
  freeBytes: number;
}

const usageAsked = new Map<string, Promise<PoolUsage>>();
const unreachable: PoolUsage = { totalBytes: 0, freeBytes: 0 };

/**
 * The size and free space of a pool; none (zero) when its storage does not answer within
 * `timeoutMs`. Asynchronous and one call per pool at a time: a shared pool whose storage hangs
 * (an NFS server gone) must neither block the agent, which would silence its heartbeats and
 * its HA lease, nor pile up blocked threads.
 */
export function poolUsage(dir: string, timeoutMs = 2000): Promise<PoolUsage> {
  let asked = usageAsked.get(dir);
  if (!asked) {
    asked = fs.promises
      .statfs(dir)
      .then(
        (s) => ({ totalBytes: s.blocks * s.bsize, freeBytes: s.bavail * s.bsize }),
        () => unreachable,
      )
      .finally(() => usageAsked.delete(dir));
    usageAsked.set(dir, asked);
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<PoolUsage>((resolve) => {
    timer = setTimeout(() => resolve(unreachable), timeoutMs);
  });
  return Promise.race([asked, late]).finally(() => clearTimeout(timer));
}

export async function volumeInfo(pools: Pools, ref: VolumeRef): Promise<VolumeInfo> {
  const file = resolveVolume(pools, ref);
  if (!fs.existsSync(file)) throw new TernError('not_found', `volume ${ref.pool}:${ref.path} does not exist`);
  // -U: the image may be open by a running VM; we only read its header.
  const out = await tool('qemu-img', ['info', '-U', '--output=json', file], `qemu-img info of ${ref.path}`);
  const info = JSON.parse(out) as {
    format: string;
    'virtual-size': number;
    'actual-size'?: number;
    'backing-filename'?: string;
    snapshots?: { name: string; 'date-sec': number }[];
  };
  return {
    volume: ref,
    format: info.format,
    virtualBytes: info['virtual-size'],
    actualBytes: info['actual-size'] ?? 0,
    backing: info['backing-filename'] ?? null,
    snapshots: (info.snapshots ?? []).map((x) => ({
      name: x.name,
      createdAt: new Date(x['date-sec'] * 1000).toISOString(),
    })),
  };
}

/** Grows a volume that no running VM uses (a running VM's disk grows through QMP). */
export async function resizeVolume(pools: Pools, req: ResizeVolumeRequest): Promise<VolumeInfo> {
  const current = await volumeInfo(pools, req.volume);
  if (req.sizeBytes < current.virtualBytes) {
    throw new TernError(
      'invalid_request',
      `${req.volume.path} is ${current.virtualBytes} bytes; disks only grow`,
    );
  }
  const file = resolveVolume(pools, req.volume);
  await tool(
    'qemu-img',
    ['resize', '-q', '-f', current.format, file, String(req.sizeBytes)],
    `resizing ${req.volume.path}`,
  );
  return volumeInfo(pools, req.volume);
}

/**
 * Internal snapshots of a volume no running VM uses: create, apply (revert) or delete. A revert
 * changes the disk without a write its backup and replication bitmaps would see (and qemu-img
 * refuses it while the image has any bitmap): they go first, so the next backup reads the disk
 * whole and the next replication cycle sends it whole, saying why, rather than building on a
 * bitmap that lies.
 */
export async function volumeSnapshot(pools: Pools, req: VolumeSnapshotRequest): Promise<VolumeInfo> {
  const file = resolveVolume(pools, req.volume);
  const flag = { create: '-c', apply: '-a', delete: '-d' }[req.op];
  if (req.op === 'apply') await removeTernBitmaps(file, req.volume.path);
  await tool(
    'qemu-img',
    ['snapshot', flag, req.name, file],
    `snapshot ${req.op} ${req.name} on ${req.volume.path}`,
  );
  return volumeInfo(pools, req.volume);
}

async function removeTernBitmaps(file: string, what: string): Promise<void> {
  const info = JSON.parse(
    await tool('qemu-img', ['info', '--output=json', file], `qemu-img info of ${what}`),
  ) as {
    'format-specific'?: { data?: { bitmaps?: { name: string }[] } };
  };
  for (const b of info['format-specific']?.data?.bitmaps ?? [])
    if (isTernBitmap(b.name))
      await tool('qemu-img', ['bitmap', '--remove', file, b.name], `removing bitmap ${b.name} of ${what}`);
}

/** `signal`: the caller went away; a copy in progress stops and leaves nothing behind. */
export async function createVolume(
  pools: Pools,
  req: CreateVolumeRequest,
  signal?: AbortSignal,
): Promise<VolumeInfo> {
  const file = resolveVolume(pools, req.volume);
  if (fs.existsSync(file))
    throw new TernError('conflict', `volume ${req.volume.pool}:${req.volume.path} exists`);
  if (req.content === 'uefi-vars') return uefiVars(req, file);
  if (!req.backing && !req.copyOf && !req.sizeBytes) {
    throw new TernError('invalid_request', 'a new volume needs a size, a backing or a volume to copy');
  }
  if (req.backing && req.format !== 'qcow2')
    throw new TernError('invalid_request', 'only qcow2 volumes have backing');
  if (req.backing && req.copyOf)
    throw new TernError('invalid_request', 'a volume has a backing or is a copy, not both');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (req.copyOf) return copyVolume(pools, req, file, signal);
  const args = ['create', '-q', '-f', req.format];
  let base: { file: string; info: VolumeInfo } | null = null;
  if (req.backing) {
    base = { file: resolveVolume(pools, req.backing), info: await baseInfo(pools, req.backing) };
    args.push('-b', base.file, '-F', base.info.format);
  }
  args.push(file);
  if (req.sizeBytes) args.push(String(req.sizeBytes));
  await tool('qemu-img', args, `creating ${req.volume.path}`);
  // Everything in the reply is known already: no second qemu-img run per new volume.
  return {
    volume: req.volume,
    format: req.format,
    virtualBytes: req.sizeBytes ?? base?.info.virtualBytes ?? 0,
    actualBytes: fs.statSync(file).blocks * 512,
    backing: base?.file ?? null,
    snapshots: [],
  };
}

/** A UEFI VM's own variable store: a copy of OVMF's empty one, made aside and renamed. */
function uefiVars(req: CreateVolumeRequest, file: string): VolumeInfo {
  if (req.format !== 'raw' || req.backing || req.copyOf || req.sizeBytes)
    throw new TernError(
      'invalid_request',
      'a UEFI variable store is a raw copy of the firmware one, nothing else',
    );
  if (!ovmfPresent())
    throw new TernError('storage_error', `this host has no OVMF (${ovmf.vars}); install the ovmf package`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.copyFileSync(ovmf.vars, `${file}.partial`);
  fs.chmodSync(`${file}.partial`, 0o600);
  fs.renameSync(`${file}.partial`, file);
  const bytes = fs.statSync(file).size;
  return {
    volume: req.volume,
    format: 'raw',
    virtualBytes: bytes,
    actualBytes: bytes,
    backing: null,
    snapshots: [],
  };
}

/**
 * Facts of a backing volume, cached by file identity: bases (templates, image versions) are
 * read-only, and probing one for each of many clones costs a process each time.
 */
const baseCache = new Map<string, { key: string; info: VolumeInfo }>();

async function baseInfo(pools: Pools, ref: VolumeRef): Promise<VolumeInfo> {
  const { file, st } = statVolume(pools, ref);
  const key = `${st.ino}:${st.size}:${st.mtimeMs}`;
  const hit = baseCache.get(file);
  if (hit?.key === key) return hit.info;
  const info = await volumeInfo(pools, ref);
  baseCache.set(file, { key, info });
  return info;
}

/** Copies a host file into a pool (converting to the requested format), atomically. */
export async function importVolume(pools: Pools, req: ImportVolumeRequest): Promise<VolumeInfo> {
  const file = resolveVolume(pools, req.volume);
  if (!path.isAbsolute(req.sourcePath)) throw new TernError('invalid_request', 'sourcePath must be absolute');
  if (!fs.existsSync(req.sourcePath)) throw new TernError('not_found', `${req.sourcePath} does not exist`);
  if (fs.existsSync(file))
    throw new TernError('conflict', `volume ${req.volume.pool}:${req.volume.path} exists`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  discardPartial(file);
  const partial = partialOf(file);
  try {
    if (req.format === 'raw') {
      fs.copyFileSync(req.sourcePath, partial);
      // A copy keeps its source's mode: the pool's files are private like every other.
      fs.chmodSync(partial, 0o600);
    } else {
      await tool(
        'qemu-img',
        ['convert', '-q', '-O', 'qcow2', req.sourcePath, partial],
        `importing ${req.sourcePath}`,
      );
    }
    fs.renameSync(partial, file);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOSPC' || /No space left on device/.test(e.message))
      throw new TernError(
        'storage_error',
        `pool ${req.volume.pool} has no room for ${req.volume.path} (${fs.statSync(req.sourcePath).size} bytes)`,
      );
    throw err;
  } finally {
    fs.rmSync(partial, { force: true });
  }
  return req.format === 'raw'
    ? {
        volume: req.volume,
        format: 'raw',
        virtualBytes: fs.statSync(file).size,
        actualBytes: 0,
        backing: null,
      }
    : volumeInfo(pools, req.volume);
}

export function deleteVolume(pools: Pools, ref: VolumeRef): void {
  const file = resolveVolume(pools, ref);
  // A copy of it still under way (its writer orphaned by a killed agent) goes too.
  discardPartial(file);
  fs.rmSync(file, { force: true });
  // What an agent stopped in the middle of making it left (copies and seeds are made aside).
  fs.rmSync(`${file}.partial`, { force: true });
  // Remove the VM's directory when its last volume goes, but never the pool root.
  const dir = path.dirname(file);
  const root = path.resolve(pools[ref.pool]);
  if (dir !== root && fs.existsSync(dir) && fs.readdirSync(dir).length === 0) fs.rmdirSync(dir);
}

/** A cloud-init NoCloud seed: an ISO 9660 image labelled "cidata". */
export async function createSeed(pools: Pools, req: CreateSeedRequest): Promise<VolumeInfo> {
  const file = resolveVolume(pools, req.volume);
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-seed-'));
  try {
    fs.writeFileSync(path.join(staging, 'meta-data'), req.metaData);
    fs.writeFileSync(path.join(staging, 'user-data'), req.userData ?? '#cloud-config\n{}\n');
    const files = ['meta-data', 'user-data'];
    if (req.networkConfig) {
      fs.writeFileSync(path.join(staging, 'network-config'), req.networkConfig);
      files.push('network-config');
    }
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await tool(
      'genisoimage',
      [
        // Keep genisoimage's padding: without it the image is shorter than the volume it
        // declares and the guest's kernel cannot read the seed.
        '-quiet',
        '-output',
        `${file}.partial`,
        '-volid',
        'cidata',
        '-joliet',
        '-rock',
        ...files.map((f) => path.join(staging, f)),
      ],
      'creating the cloud-init seed',
    );
    fs.renameSync(`${file}.partial`, file);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
    fs.rmSync(`${file}.partial`, { force: true });
  }
  return {
    volume: req.volume,
    format: 'raw',
    virtualBytes: fs.statSync(file).size,
    actualBytes: 0,
    backing: null,
  };
}

/** A standalone copy (its backing chain flattened), grown to the requested size; atomic. */
async function copyVolume(
  pools: Pools,
  req: CreateVolumeRequest,
  file: string,
  signal?: AbortSignal,
): Promise<VolumeInfo> {
  const source = resolveVolume(pools, req.copyOf!);
  // A copy an earlier agent left half-done would hold the write lock this one needs.
  discardPartial(file);
  const partial = partialOf(file);
  try {
    await tool(
      'qemu-img',
      ['convert', '-q', '-U', '-O', req.format, source, partial],
      `copying ${req.copyOf!.path}`,
      signal,
    );
    if (req.sizeBytes) {
      await tool(
        'qemu-img',
        ['resize', '-q', '-f', req.format, partial, String(req.sizeBytes)],
        'growing the copy',
        signal,
      );
    }
    fs.renameSync(partial, file);
  } finally {
    fs.rmSync(partial, { force: true });
  }
  return volumeInfo(pools, req.volume);
}
