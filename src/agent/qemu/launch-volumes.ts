/**
 * What a VM's QEMU needs from storage before it is launched: its volumes resolved to files that
 * exist (and OVMF for a UEFI VM), and its qcow2 disks checked for damage.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { ovmf, ovmfPresent } from '../firmware.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { qcow2Problem } from '../storage/qcow2-layout.ts';
import type { ResolvedVolumes } from './command-line.ts';

/** The files of a VM's volumes; throws when one is missing or a UEFI VM cannot boot here. */
export function launchVolumes(spec: VmSpec, pools: Pools): ResolvedVolumes {
  const volumes = {
    disks: spec.disks.map((d) => resolveVolume(pools, d.volume)),
    seed: spec.seed ? resolveVolume(pools, spec.seed) : undefined,
    kernel: spec.boot ? resolveVolume(pools, spec.boot.kernel) : undefined,
    initrd: spec.boot?.initrd ? resolveVolume(pools, spec.boot.initrd) : undefined,
    efiVars: spec.efiVars ? resolveVolume(pools, spec.efiVars) : undefined,
    cdrom: spec.cdrom?.medium ? resolveVolume(pools, spec.cdrom.medium) : undefined,
  };
  if (spec.firmware === 'uefi') {
    if (!ovmfPresent())
      throw new TernError(
        'hypervisor_error',
        `VM ${spec.name} boots with UEFI and this host has no OVMF (${ovmf.code}); install the ovmf package (tern doctor)`,
      );
    if (!volumes.efiVars)
      throw new TernError('invalid_request', `UEFI VM ${spec.name} has no variable store volume`);
  }
  for (const file of [
    ...volumes.disks,
    volumes.seed,
    volumes.kernel,
    volumes.initrd,
    volumes.efiVars,
    volumes.cdrom,
  ]) {
    if (file && !fs.existsSync(file)) throw new TernError('storage_error', `volume ${file} does not exist`);
  }
  if (spec.firmware === 'uefi') return { ...volumes, firmwareCode: ovmf.code };
  return volumes;
}

/**
 * A damaged qcow2 disk (cut short, or marked corrupt by QEMU) is refused before QEMU runs the
 * guest into I/O errors on it while the VM reads as running. The check is cheap (qcow2-layout.ts).
 */
export async function checkDisks(spec: VmSpec, volumes: ResolvedVolumes): Promise<void> {
  for (const [i, disk] of spec.disks.entries()) {
    if (disk.format !== 'qcow2') continue;
    const problem = await qcow2Problem(volumes.disks[i]).catch(
      (err: Error) => `it cannot be read: ${err.message}`,
    );
    if (problem) {
      throw new TernError(
        'storage_error',
        `disk ${i} (${disk.volume.pool}:${disk.volume.path}) of VM ${spec.name} is damaged: ${problem}. Tern does not start a VM on a damaged disk: repair it (qemu-img check -r all) or restore it from a backup`,
      );
    }
  }
}
