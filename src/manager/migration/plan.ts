/**
 * What moving a VM to another host involves, decided from the VM's spec and the two hosts'
 * facts alone: which of its volumes the target already reaches (shared pools), which must be
 * copied there (writable disks and the seed in local pools, mirrored over NBD; a UEFI variable
 * store, which QEMU migrates with the guest's memory), and what makes
 * a move impossible. Pure; the migrate task carries it out.
 */
import type { MigrationMode, MigrationStorage } from '../../wire/agent.ts';
import type { HostFacts } from '../../wire/host.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';

export interface MirroredVolume {
  from: VolumeRef;
  to: VolumeRef;
  format: 'qcow2' | 'raw';
}

export type MovePlan =
  | {
      ok: true;
      storage: MigrationStorage;
      /** The spec the target runs: mirrored volumes renamed to the target pool. */
      spec: VmSpec;
      mirrored: MirroredVolume[];
    }
  | { ok: false; reason: string };

const isShared = (facts: HostFacts, pool: string) => facts.pools.some((p) => p.name === pool && p.shared);

/** The pool on the target that receives copied volumes: `wanted`, else one named as the source's, else its first local one. */
export function targetPoolFor(target: HostFacts, sourcePool: string, wanted?: string): string | null {
  const local = target.pools.filter((p) => !p.shared);
  if (wanted) return target.pools.some((p) => p.name === wanted) ? wanted : null;
  return (local.find((p) => p.name === sourcePool) ?? local[0])?.name ?? null;
}

export function planMove(
  spec: VmSpec,
  source: HostFacts,
  target: HostFacts,
  opts: { mode: MigrationMode; targetPool?: string },
): MovePlan {
  const mirrored: MirroredVolume[] = [];
  const reach = (ref: VolumeRef) => isShared(source, ref.pool) && isShared(target, ref.pool);
  const copy = (ref: VolumeRef, format: 'qcow2' | 'raw'): VolumeRef | string => {
    const pool = targetPoolFor(target, ref.pool, opts.targetPool);
    if (!pool)
      return `host ${target.hostname} has no local storage pool to copy ${ref.pool}:${ref.path} into`;
    const to = { pool, path: ref.path };
    mirrored.push({ from: ref, to, format });
    return to;
  };
  const disks = [];
  for (const [i, d] of spec.disks.entries()) {
    if (reach(d.volume)) {
      disks.push(d);
      continue;
    }
    if (d.readonly) {
      return {
        ok: false,
        reason: `read-only disk ${i} (${d.volume.pool}:${d.volume.path}) is in a pool host ${target.hostname} cannot reach`,
      };
    }
    const to = copy(d.volume, d.format);
    if (typeof to === 'string') return { ok: false, reason: to };
    disks.push({ ...d, volume: to });
  }
  let seed = spec.seed;
  if (seed && !reach(seed)) {
    const to = copy(seed, 'raw');
    if (typeof to === 'string') return { ok: false, reason: to };
    seed = to;
  }
  for (const [what, ref] of [
    ['kernel', spec.boot?.kernel],
    ['initrd', spec.boot?.initrd],
  ] as const) {
    if (ref && !reach(ref)) {
      return {
        ok: false,
        reason: `the boot ${what} (${ref.pool}:${ref.path}) is in a pool host ${target.hostname} cannot reach; keep boot files on shared storage`,
      };
    }
  }
  if (spec.cdrom?.medium && !reach(spec.cdrom.medium)) {
    const m = spec.cdrom.medium;
    return {
      ok: false,
      reason: `the CD-ROM's medium (${m.pool}:${m.path}) is in a pool host ${target.hostname} cannot reach; eject it first`,
    };
  }
  // The variable store is a pflash device, not a drive: the target makes it empty, and QEMU
  // itself carries its content in the migration stream (the flash is guest memory) and writes
  // it to the target's file when the guest resumes there.
  let efiVars = spec.efiVars;
  if (efiVars && !reach(efiVars)) {
    const to = copy(efiVars, 'raw');
    if (typeof to === 'string') return { ok: false, reason: to };
    efiVars = to;
  }
  if (opts.mode === 'quick' && mirrored.length > 0) {
    return {
      ok: false,
      reason: 'quick migration needs every volume on shared storage; use a live migration',
    };
  }
  return {
    ok: true,
    storage: mirrored.length > 0 ? 'mirror' : 'shared',
    spec: { ...spec, disks, ...(seed ? { seed } : {}), ...(efiVars ? { efiVars } : {}) },
    mirrored,
  };
}

/** A VM with CPU mode `host` sees its host's exact CPU; it may only move to an identical one. */
export function cpuMismatch(source: HostFacts, target: HostFacts): string | null {
  if (source.cpuVendor !== target.cpuVendor)
    return `CPU vendor ${target.cpuVendor} differs from ${source.cpuVendor}`;
  if (source.cpuModel !== target.cpuModel)
    return `CPU model "${target.cpuModel}" differs from "${source.cpuModel}"`;
  const a = new Set(source.cpuFlags);
  const b = new Set(target.cpuFlags);
  const missing = [...a].filter((f) => !b.has(f));
  const extra = [...b].filter((f) => !a.has(f));
  if (missing.length + extra.length > 0) {
    return `CPU flags differ (missing: ${missing.slice(0, 8).join(' ') || 'none'}; extra: ${extra.slice(0, 8).join(' ') || 'none'})`;
  }
  return null;
}
