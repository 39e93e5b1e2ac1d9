/**
 * Backups of simulated VMs: the sim's disks hold no guest data, so a disk reads as a pattern
 * derived from the VM, the disk and how often each 64 KiB granule was written (`write`, a
 * knob), and the sim keeps per-disk dirty bitmaps rotated as the QEMU driver rotates its
 * persistent ones (`<prefix>-<backup id>`). Backups through the sim are real: real chunk files,
 * indexes and manifests written by the same writer (src/agent/backup/backup-writer.ts), so the
 * manager's backup tasks run against a simulated host as against a real one.
 *
 * A bitmap survives a clean stop and start (it lives in the image, as QEMU's persistent ones);
 * a crash of the VM leaves it inconsistent, and the next backup reads the disk whole.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { BackupVmReport, BackupVmRequest, BackupVmResult } from '../../wire/backup.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { backupView, openForBackup, writeBackup } from '../backup/backup-writer.ts';
import { type BitmapFacts, bitmapDistrust } from '../backup/bitmap-trust.ts';
import type { Extent } from '../backup/nbd/block-status.ts';
import { STATE_DIRTY, STATE_HOLE, STATE_ZERO } from '../backup/nbd/protocol.ts';
import type { DiskView, ViewRequest, VmView } from '../backup/view.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { tool, volumeInfo } from '../storage/volumes.ts';
import type { SimVms } from './vms.ts';

export const SIM_GRANULE = 64 * 1024;

interface SimBitmap {
  granules: Set<number>;
  enabled: boolean;
  inconsistent: boolean;
}

/** What the sim knows of one disk image: each granule's write count, and its bitmaps. */
interface SimImage {
  writes: Map<number, number>;
  bitmaps: Map<string, SimBitmap>;
}

export interface SimBackupVm {
  /** The state of the VM's process here (running, paused), null when it has none. */
  state: string | null;
  /** Its guest agent answers: a freeze would work. */
  agentResponding: boolean;
}

/**
 * The VM as a backup sees it: a VM with no process here (stopped, crashed, or known only by its
 * volumes) is read from its images; one arriving or gone by migration is not this host's to back up.
 */
export function backupViewOf(sim: SimVms, id: string): SimBackupVm {
  const vm = sim.vms.get(id);
  const live = vm !== undefined && vm.state !== 'crashed' ? sim.running(id) : null;
  return {
    state: live?.state ?? null,
    agentResponding: live !== null && live.guest.agent === 'responding' && !live.guestHung,
  };
}

/** Why a backup is only crash-consistent, as the QEMU driver says it; null when it froze. */
function consistencyNote(vm: SimBackupVm, freeze: boolean): string | null {
  if (vm.state === null) return 'stopped VM: consistent';
  if (!freeze) return 'no freeze asked';
  if (vm.state !== 'running') return `the VM is ${vm.state}: not frozen`;
  if (!vm.agentResponding) return 'the guest agent does not answer: not frozen';
  return null;
}

export class SimDiskContents {
  readonly #pools: Pools;
  /** By the image's file. */
  readonly #images = new Map<string, SimImage>();

  constructor(pools: Pools) {
    this.#pools = pools;
  }

  #image(ref: VolumeRef): SimImage {
    const file = resolveVolume(this.#pools, ref);
    let image = this.#images.get(file);
    if (!image) {
      image = { writes: new Map(), bitmaps: new Map() };
      this.#images.set(file, image);
    }
    return image;
  }

  /**
   * A VM starts on these disks: an image the sim does not know yet brings the persistent
   * bitmaps its qcow2 file holds (as QEMU loads them at open), empty and enabled, such as the
   * one a reverse replication's lend adds (../replication/replica-store.ts).
   */
  async open(refs: readonly VolumeRef[]): Promise<void> {
    for (const ref of refs) {
      const file = resolveVolume(this.#pools, ref);
      if (this.#images.has(file) || !fs.existsSync(file)) continue;
      const info = JSON.parse(
        await tool('qemu-img', ['info', '-U', '--output=json', file], `reading ${ref.path}`),
      ) as { 'format-specific'?: { data?: { bitmaps?: { name: string }[] } } };
      if (this.#images.has(file)) continue;
      const image = this.#image(ref);
      for (const b of info['format-specific']?.data?.bitmaps ?? [])
        image.bitmaps.set(b.name, { granules: new Set(), enabled: true, inconsistent: false });
    }
  }

  /** The guest writes `length` bytes at `offset`: new contents there, marked in enabled bitmaps. */
  write(ref: VolumeRef, offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0)
      throw new TernError('invalid_request', `bad write ${offset}+${length}`);
    const image = this.#image(ref);
    const last = Math.floor((offset + length - 1) / SIM_GRANULE);
    for (let g = Math.floor(offset / SIM_GRANULE); g <= last; g++) {
      image.writes.set(g, (image.writes.get(g) ?? 0) + 1);
      for (const b of image.bitmaps.values()) if (b.enabled) b.granules.add(g);
    }
  }

  /** QEMU ended without storing its bitmaps: each is inconsistent from now on. */
  crashed(refs: readonly VolumeRef[]): void {
    for (const ref of refs) for (const b of this.#image(ref).bitmaps.values()) b.inconsistent = true;
  }

  /** The dirty bitmaps of `prefix` on a disk (what a test or a revert looks at). */
  bitmaps(ref: VolumeRef, prefix: string): string[] {
    return [...this.#image(ref).bitmaps.keys()].filter((n) => n.startsWith(`${prefix}-`));
  }

  async backup(
    vmId: string,
    vm: SimBackupVm,
    req: BackupVmRequest,
    report: (r: BackupVmReport) => void,
    signal: AbortSignal,
  ): Promise<BackupVmResult> {
    const ds = await openForBackup(req);
    return this.withView(vmId, vm, backupView(req), (view) => writeBackup(ds, req, view, report, signal));
  }

  /**
   * The sim's point-in-time view (../backup/view.ts): the bitmaps rotated as one QMP
   * transaction would, the disks' contents as they are now. On `use`'s success only the new
   * bitmap stays; on failure all are kept, and the next view merges them all.
   */
  async withView<T>(
    vmId: string,
    vm: SimBackupVm,
    req: ViewRequest,
    use: (view: VmView) => Promise<T>,
  ): Promise<T> {
    const sizes = await Promise.all(
      req.disks.map(async (d) => (await volumeInfo(this.#pools, d.volume)).virtualBytes),
    );
    const fresh = `${req.bitmap}-${req.point}`;
    const takenAt = new Date().toISOString();
    const views: DiskView[] = [];
    for (const [i, d] of req.disks.entries()) {
      const image = this.#image(d.volume);
      // The rotation, as one QMP transaction would: the new bitmap starts, the others stop.
      const facts: BitmapFacts[] = [...image.bitmaps].map(([name, b]) => ({
        name,
        persistent: true,
        inconsistent: b.inconsistent,
      }));
      const distrust = bitmapDistrust(facts, req.bitmap, req.previous);
      const ours = [...image.bitmaps].filter(([n]) => n.startsWith(`${req.bitmap}-`));
      const dirty = new Set<number>();
      for (const [, b] of ours) {
        b.enabled = false;
        for (const g of b.granules) dirty.add(g);
      }
      // A retry of a point that failed finds its bitmap there: it goes on recording.
      const kept = image.bitmaps.get(fresh);
      if (kept) kept.enabled = true;
      else image.bitmaps.set(fresh, { granules: new Set(), enabled: true, inconsistent: false });
      views.push(simDiskView(vmId, d.name, d.format, sizes[i]!, new Map(image.writes), dirty, distrust));
    }
    const note = consistencyNote(vm, req.freeze);
    const result = await use({
      takenAt,
      consistency: note === null ? 'application' : 'crash',
      consistencyNote: note,
      disks: views,
    });
    for (const d of req.disks) {
      const image = this.#image(d.volume);
      for (const name of image.bitmaps.keys())
        if (name.startsWith(`${req.bitmap}-`) && name !== fresh) image.bitmaps.delete(name);
    }
    return result;
  }
}

function simDiskView(
  vmId: string,
  name: string,
  format: 'qcow2' | 'raw',
  size: number,
  writes: Map<number, number>,
  dirty: Set<number>,
  distrust: string | null,
): DiskView {
  const granules = Math.ceil(size / SIM_GRANULE);
  const extents = (flagsOf: (g: number) => number): Extent[] => {
    const out: Extent[] = [];
    for (let g = 0; g < granules; g++) {
      const flags = flagsOf(g);
      const offset = g * SIM_GRANULE;
      const length = Math.min(SIM_GRANULE, size - offset);
      const last = out.at(-1);
      if (last && last.flags === flags) last.length += length;
      else out.push({ offset, length, flags });
    }
    return out;
  };
  return {
    name,
    size,
    format,
    bitmapDistrust: distrust,
    allocation: async () => extents((g) => (writes.has(g) ? 0 : STATE_HOLE | STATE_ZERO)),
    dirty: async () => extents((g) => (dirty.has(g) ? STATE_DIRTY : 0)),
    read: async (offset, length) => {
      const out = Buffer.alloc(length);
      for (let at = offset; at < offset + length; ) {
        const g = Math.floor(at / SIM_GRANULE);
        const end = Math.min(offset + length, (g + 1) * SIM_GRANULE);
        const count = writes.get(g);
        if (count) {
          const pattern = granulePattern(vmId, name, g, count);
          pattern.copy(out, at - offset, at - g * SIM_GRANULE, end - g * SIM_GRANULE);
        }
        at = end;
      }
      return out;
    },
  };
}

/** A granule's bytes after its `count`th write: a 32-byte digest repeated. */
export function granulePattern(vmId: string, disk: string, granule: number, count: number): Buffer {
  const digest = createHash('sha256').update(`${vmId}/${disk}/${granule}/${count}`).digest();
  const out = Buffer.allocUnsafe(SIM_GRANULE);
  for (let at = 0; at < SIM_GRANULE; at += digest.length) digest.copy(out, at);
  return out;
}
