/**
 * Turns a create request (and its template) into the VM spec and the volumes to make.
 * Pure: ids and MACs come in from the caller.
 */
import { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { Image } from '../../wire/image.ts';
import type { Template } from '../../wire/template.ts';
import {
  type CreateVmRequest,
  gibToBytes,
  type NicSpec,
  type VmSpec,
  type VolumeRef,
} from '../../wire/vm.ts';
import { allocateMac } from '../networks/mac.ts';
import type { StaticAddress } from '../networks/nics.ts';

export interface SeedContent {
  metaData: string;
  userData?: string;
  networkConfig?: string;
}

export interface VmPlan {
  spec: VmSpec;
  volumes: CreateVolumeRequest[];
  diskSizes: number[];
  clone: 'linked' | 'full' | null;
  /** The cloud-init NoCloud seed that gives the VM its own identity. */
  seed: SeedContent;
}

/**
 * A MAC under Tern's prefix from random bytes, for VMs made inside a task (image pools); the
 * inventory's key on the MAC refuses the rare one another NIC has. VMs made through the API
 * get theirs from networks/nics.ts, which looks.
 */
export function randomMac(random: (n: number) => Buffer): string {
  return allocateMac(new Set(), random);
}

/** A NIC decided from the inventory (networks/nics.ts): its spec, and the address the guest is told. */
export interface NicPlan {
  spec: NicSpec;
  address: StaticAddress | null;
}

/**
 * Library items a VM is made from besides its template: a disk image, an ISO for its CD-ROM;
 * and its NICs when any is on a managed network (decided from the inventory).
 */
export interface PlanMedia {
  image?: Image | null;
  iso?: Image | null;
  nics?: NicPlan[];
}

/** NICs outside managed networks need nothing from the inventory but a MAC. */
function plainNics(req: CreateVmRequest, macs: () => string): NicPlan[] {
  return (req.nics ?? [{ mode: 'user' as const }]).map((network, i) => {
    if (network.mode === 'network')
      throw new TernError(
        'internal',
        `NIC ${i} is on a managed network and was not planned from the inventory`,
      );
    return { spec: { mac: macs(), network }, address: null };
  });
}

/** The disk a VM's first disk is cloned from: its template's or a library image's. */
function baseOf(template: Template | null, image: Image | null) {
  if (template && image)
    throw new TernError('invalid_request', 'a VM is made from a template or an image, not both', {
      field: 'image',
    });
  if (template)
    return { volume: template.disk, bytes: template.diskSizeBytes, what: `template ${template.name}'s disk` };
  if (image) {
    if (image.kind !== 'disk')
      throw new TernError(
        'invalid_request',
        `image ${image.name} is an ISO: it goes in a CD-ROM (iso: ${image.name}), it is no disk to clone`,
        { field: 'image' },
      );
    return { volume: image.volume, bytes: image.virtualBytes, what: `image ${image.name}'s virtual size` };
  }
  return null;
}

const GiB = 1024 ** 3;
const gib = (bytes: number) => `${Math.round((bytes / GiB) * 100) / 100} GiB`;

export function planVm(
  req: CreateVmRequest,
  template: Template | null,
  id: string,
  defaultPool: string,
  macs: () => string,
  clientMachineId: string = id,
  media: PlanMedia = {},
): VmPlan {
  const image = media.image ?? null;
  const iso = media.iso ?? null;
  const base = baseOf(template, image);
  if (iso && iso.kind !== 'iso')
    throw new TernError(
      'invalid_request',
      `image ${iso.name} is a disk image, not an ISO: make the VM from it with image: ${iso.name}`,
      { field: 'iso' },
    );
  if (req.bootOrder && !iso)
    throw new TernError('invalid_request', 'a boot order (cd or disk) needs a CD-ROM: give an iso', {
      field: 'bootOrder',
    });
  // The VM's disks go to the requested pool; a linked clone's backing may live in another.
  const pool = req.pool ?? base?.volume.pool ?? defaultPool;
  const dir = `vms/${id}`;
  const volumes: CreateVolumeRequest[] = [];
  const diskSizes: number[] = [];
  const bootSize = req.diskGiB ? gibToBytes(req.diskGiB) : undefined;

  if (base) {
    // Disks only grow: a smaller disk would cut off the end of the guest's filesystem.
    if (bootSize !== undefined && bootSize < base.bytes) {
      throw new TernError(
        'invalid_request',
        `diskGiB (${gib(bootSize)}) is smaller than ${base.what} (${gib(base.bytes)}); disks only grow`,
        { field: 'diskGiB', minimumBytes: base.bytes },
      );
    }
    // A linked clone is a qcow2 overlay whose backing file is the read-only base (a template's
    // disk or a library image, compressed or not); a full clone is a standalone copy.
    const source = req.full ? { copyOf: base.volume } : { backing: base.volume };
    volumes.push({
      volume: { pool, path: `${dir}/disk0.qcow2` },
      format: 'qcow2',
      ...source,
      sizeBytes: bootSize,
    });
    diskSizes.push(bootSize ?? base.bytes);
  } else {
    if (!bootSize)
      throw new TernError('invalid_request', 'diskGiB is required without a template or an image', {
        field: 'diskGiB',
      });
    volumes.push({ volume: { pool, path: `${dir}/disk0.qcow2` }, format: 'qcow2', sizeBytes: bootSize });
    diskSizes.push(bootSize);
  }
  (req.extraDisksGiB ?? []).forEach((gib, i) => {
    const size = gibToBytes(gib);
    volumes.push({ volume: { pool, path: `${dir}/disk${i + 1}.qcow2` }, format: 'qcow2', sizeBytes: size });
    diskSizes.push(size);
  });

  const disks = volumes.map((v, slot) => ({
    volume: v.volume,
    format: 'qcow2' as const,
    readonly: false,
    slot,
  }));
  const firmware = req.firmware ?? template?.firmware ?? 'bios';
  let efiVars: VolumeRef | undefined;
  if (firmware === 'uefi') {
    // The VM's own variable store (boot entries, settings), made from the host's empty one;
    // one of its volumes, so it moves and goes with the VM.
    efiVars = { pool, path: `${dir}/efivars.fd` };
    volumes.push({ volume: efiVars, format: 'raw', content: 'uefi-vars' });
  }
  const nics = media.nics ?? plainNics(req, macs);
  if (req.ip && nics[0]?.address)
    throw new TernError(
      'invalid_request',
      'the first NIC is on a managed network, whose address it gets from there: give it with ip= on the NIC',
      { field: 'ip' },
    );
  const spec: VmSpec = {
    id,
    name: req.name,
    machine: template?.machine ?? 'q35',
    cpuModel: 'host',
    vcpus: req.vcpus ?? template?.vcpus ?? 1,
    memoryMiB: req.memoryMiB ?? template?.memoryMiB ?? 512,
    disks,
    nics: nics.map((n) => n.spec),
    ...(template?.boot ? { boot: template.boot } : {}),
    seed: { pool, path: `${dir}/seed.iso` },
    ...(firmware === 'uefi' ? { firmware, efiVars } : {}),
    ...(iso
      ? {
          cdrom: { medium: iso.volume },
          // An install boots from the CD while the blank disk has no OS; anything with an OS
          // boots from its disk, the CD after it.
          bootOrder: req.bootOrder ?? (base ? 'disk' : 'cd'),
        }
      : {}),
  };
  const seed: SeedContent = { metaData: seedMetaData(spec, clientMachineId) };
  if (req.userData !== undefined) seed.userData = req.userData;
  if (req.ip && !nics[0])
    throw new TernError('invalid_request', 'a static address needs a NIC', { field: 'ip' });
  const addresses = nics.map((n, i) => (i === 0 && req.ip ? req.ip : n.address));
  if (addresses.some((a) => a !== null))
    seed.networkConfig = networkConfig(
      nics.map((n, i) => ({ mac: n.spec.mac, address: addresses[i] ?? null })),
    );
  return { spec, volumes, diskSizes, clone: base ? (req.full ? 'full' : 'linked') : null, seed };
}

/**
 * The NoCloud meta-data giving the VM its own identity: a new instance id makes cloud-init
 * create new SSH host keys on first boot (and the tiny guest a new machine id). Real guests
 * get a new machine id only from a generalized template (library/generalize.ts): systemd
 * fills an empty /etc/machine-id, and cloud-init leaves it alone.
 */
export function seedMetaData(spec: VmSpec, clientMachineId: string = spec.id): string {
  return `instance-id: ${spec.id}\nlocal-hostname: ${spec.name}\nclient-machine-id: ${clientMachineId}\n`;
}

/**
 * cloud-init network config version 2: each NIC matched by its MAC, with its static address
 * (the same its network's DHCP leases to that MAC) or DHCP.
 */
export function networkConfig(nics: readonly { mac: string; address: StaticAddress | null }[]): string {
  const lines = ['version: 2', 'ethernets:'];
  nics.forEach(({ mac, address }, i) => {
    lines.push(`  nic${i}:`, '    match:', `      macaddress: "${mac}"`, `    set-name: eth${i}`);
    if (!address) {
      lines.push('    dhcp4: true');
      return;
    }
    lines.push(`    addresses: [${address.address}]`);
    if (address.gateway) lines.push(`    gateway4: ${address.gateway}`);
    if (address.dns?.length) lines.push('    nameservers:', `      addresses: [${address.dns.join(', ')}]`);
  });
  return `${lines.join('\n')}\n`;
}
