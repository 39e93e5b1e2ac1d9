/**
 * Turns a create request (and its template) into the VM spec and the volumes to make.
 * Pure: ids and MACs come in from the caller.
 */
import { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { Template } from '../../wire/template.ts';
import { type CreateVmRequest, gibToBytes, type VmSpec } from '../../wire/vm.ts';

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

export function randomMac(random: (n: number) => Buffer): string {
  // 52:54:00 is QEMU's locally administered prefix.
  return ['52', '54', '00', ...[...random(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

export function planVm(
  req: CreateVmRequest,
  template: Template | null,
  id: string,
  defaultPool: string,
  macs: () => string,
  clientMachineId: string = id,
): VmPlan {
  // The VM's disks go to the requested pool; a linked clone's backing may live in another.
  const pool = req.pool ?? template?.disk.pool ?? defaultPool;
  const dir = `vms/${id}`;
  const volumes: CreateVolumeRequest[] = [];
  const diskSizes: number[] = [];
  const bootSize = req.diskGiB ? gibToBytes(req.diskGiB) : undefined;

  if (template) {
    if (bootSize !== undefined && bootSize < template.diskSizeBytes) {
      throw new TernError('invalid_request', `diskGiB is smaller than template ${template.name}'s disk`, {
        field: 'diskGiB',
      });
    }
    // A linked clone is a qcow2 overlay whose backing file is the template's read-only base;
    // a full clone is a standalone copy that no longer needs the template.
    const source = req.full ? { copyOf: template.disk } : { backing: template.disk };
    volumes.push({
      volume: { pool, path: `${dir}/disk0.qcow2` },
      format: 'qcow2',
      ...source,
      sizeBytes: bootSize,
    });
    diskSizes.push(bootSize ?? template.diskSizeBytes);
  } else {
    if (!bootSize)
      throw new TernError('invalid_request', 'diskGiB is required without a template', { field: 'diskGiB' });
    volumes.push({ volume: { pool, path: `${dir}/disk0.qcow2` }, format: 'qcow2', sizeBytes: bootSize });
    diskSizes.push(bootSize);
  }
  (req.extraDisksGiB ?? []).forEach((gib, i) => {
    const size = gibToBytes(gib);
    volumes.push({ volume: { pool, path: `${dir}/disk${i + 1}.qcow2` }, format: 'qcow2', sizeBytes: size });
    diskSizes.push(size);
  });

  const spec: VmSpec = {
    id,
    name: req.name,
    machine: template?.machine ?? 'q35',
    cpuModel: 'host',
    vcpus: req.vcpus ?? template?.vcpus ?? 1,
    memoryMiB: req.memoryMiB ?? template?.memoryMiB ?? 512,
    disks: volumes.map((v, slot) => ({ volume: v.volume, format: 'qcow2', readonly: false, slot })),
    nics: (req.nics ?? [{ mode: 'user' }]).map((network) => ({ mac: macs(), network })),
    ...(template?.boot ? { boot: template.boot } : {}),
    seed: { pool, path: `${dir}/seed.iso` },
  };
  const seed: SeedContent = { metaData: seedMetaData(spec, clientMachineId) };
  if (req.userData !== undefined) seed.userData = req.userData;
  if (req.ip) seed.networkConfig = networkConfig(spec.nics[0]?.mac, req.ip);
  return { spec, volumes, diskSizes, clone: template ? (req.full ? 'full' : 'linked') : null, seed };
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

/** cloud-init network config version 2 with a static address for the first NIC. */
export function networkConfig(mac: string | undefined, ip: NonNullable<CreateVmRequest['ip']>): string {
  if (!mac) throw new TernError('invalid_request', 'a static address needs a NIC', { field: 'ip' });
  const lines = [
    'version: 2',
    'ethernets:',
    '  nic0:',
    '    match:',
    `      macaddress: "${mac}"`,
    '    set-name: eth0',
    `    addresses: [${ip.address}]`,
  ];
  if (ip.gateway) lines.push(`    gateway4: ${ip.gateway}`);
  if (ip.dns?.length) lines.push('    nameservers:', `      addresses: [${ip.dns.join(', ')}]`);
  return `${lines.join('\n')}\n`;
}
