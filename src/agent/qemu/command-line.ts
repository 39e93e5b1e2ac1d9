/**
 * Builds the QEMU command line from a VM spec. Pure: paths are resolved by the caller, so the
 * same spec always gives the same argv and the mapping is tested without QEMU.
 */
import { diskSerial } from '../../wire/guest-command.ts';
import { type DiskSpec, diskSlot, hotplugSlots, type NicSpec, nicSlot, type VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';
import type { BlockdevOptions } from './qmp-commands.ts';

export interface RuntimePaths {
  qmp: string;
  qga: string;
  serial: string;
  consoleLog: string;
  pidfile: string;
}

export interface ResolvedVolumes {
  disks: string[];
  seed?: string;
  kernel?: string;
  initrd?: string;
  /** UEFI: the firmware's code (shared, read-only) and the VM's own variable store. */
  firmwareCode?: string;
  efiVars?: string;
  /** The ISO in the CD-ROM drive, if any. */
  cdrom?: string;
}

/**
 * The CD-ROM's block nodes and device: fixed names, so QMP can change its medium. It sits on
 * the machine's own IDE bus (q35's built-in AHCI, pc's secondary IDE channel), which every
 * firmware and installer can boot from.
 */
export const cdromNodes = Object.freeze({ file: 'cd0-file', format: 'cd0', device: 'cd0-dev' });

export function cdromMediumNodes(file: string): { file: BlockdevOptions; format: BlockdevOptions } {
  return {
    file: { driver: 'file', filename: file, 'node-name': cdromNodes.file, 'read-only': true },
    format: { driver: 'raw', file: cdromNodes.file, 'node-name': cdromNodes.format, 'read-only': true },
  };
}

/** A disk's block nodes and device; node names follow the slot, so they stay stable. */
export function diskNodes(slot: number) {
  return { file: `disk${slot}-file`, format: `disk${slot}`, device: `disk${slot}-dev`, port: `rp${slot}` };
}

/** The -blockdev/-device arguments of one disk. */
function diskArgs(
  disk: DiskSpec,
  slot: number,
  file: string,
  q35: boolean,
  bootIndex: number | null,
): string[] {
  const n = diskNodes(slot);
  const ro = disk.readonly ? 'on' : 'off';
  return [
    '-blockdev',
    `driver=file,filename=${opt(file)},node-name=${n.file},read-only=${ro},discard=unmap`,
    '-blockdev',
    `driver=${disk.format},file=${n.file},node-name=${n.format},read-only=${ro},discard=unmap`,
    '-device',
    `${deviceOption(diskDevice(slot, q35))}${bootIndex !== null ? `,bootindex=${bootIndex}` : ''}`,
  ];
}

/**
 * The virtio-blk device of a disk, as properties (QMP device_add takes them as they are).
 * It stops the VM on ENOSPC instead of reporting the error to the guest: a full pool pauses
 * the VM rather than corrupting its filesystem.
 */
export function diskDevice(
  slot: number,
  q35: boolean,
): { driver: string; id: string; [prop: string]: string } {
  const n = diskNodes(slot);
  return {
    driver: 'virtio-blk-pci',
    drive: n.format,
    id: n.device,
    // How the guest tells which of its disks is Tern's disk in this slot (--grow-fs).
    serial: diskSerial(slot),
    werror: 'enospc',
    rerror: 'report',
    ...(q35 ? { bus: n.port } : {}),
  };
}

function deviceOption(props: Record<string, string>): string {
  const { driver, ...rest } = props;
  return [driver, ...Object.entries(rest).map(([k, v]) => `${k}=${opt(v)}`)].join(',');
}

/** QEMU's option syntax escapes a comma by doubling it. */
function opt(value: string): string {
  return value.replaceAll(',', ',,');
}

/** A NIC's backend, device and (q35) root port: named after its slot, so they stay stable. */
export function nicNodes(slot: number) {
  return { netdev: `net${slot}`, device: `net${slot}-dev`, port: `rpn${slot}` };
}

/** NIC slots with a hot-pluggable place from boot, so NICs can be added to a running VM. */
const nicSlots = 8;

/**
 * The virtio-net device of a NIC, as properties (QMP device_add takes them as they are). A NIC
 * on a managed network can come and go while the VM runs: on q35 it sits behind a root port of
 * its slot, on pc at a fixed address of its slot (so a migration's target has it at the same
 * place); the others sit where they always did.
 */
export function nicDevice(
  nic: NicSpec,
  slot: number,
  q35: boolean,
): { driver: string; id: string; [prop: string]: string } {
  const n = nicNodes(slot);
  const place: Record<string, string> =
    nic.network.mode !== 'network'
      ? {}
      : q35
        ? { bus: n.port }
        : { bus: 'pci.0', addr: `0x${(0x18 + slot).toString(16)}` };
  return { driver: 'virtio-net-pci', netdev: n.netdev, id: n.device, mac: nic.mac, ...place };
}

function netdevOption(nic: NicSpec, slot: number, tap: string | null): string {
  const id = nicNodes(slot).netdev;
  switch (nic.network.mode) {
    case 'user':
      return `user,id=${id}`;
    case 'bridge':
      return `bridge,id=${id},br=${opt(nic.network.bridge)}`;
    case 'network':
      if (!tap) throw new Error(`NIC ${nic.mac} is on a managed network and needs its plugged tap`);
      // The agent made the tap and owns it: QEMU runs no script on it, at start or at exit.
      return `tap,id=${id},ifname=${opt(tap)},script=no,downscript=no`;
  }
}

export interface LaunchOptions {
  /**
   * Target of a migration: the guest's state arrives later through `migrate-incoming`, and
   * its CPUs stay stopped after it arrived until the agent says `cont`.
   */
  incoming?: boolean;
  /**
   * The taps the agent plugged for the NICs on managed networks, by NIC index (vm-ports.ts):
   * QEMU only opens them, so their rules are in place before the guest sends anything.
   */
  taps?: readonly (string | null)[];
}

export function buildCommandLine(
  spec: VmSpec,
  volumes: ResolvedVolumes,
  paths: RuntimePaths,
  accel: AcceleratorChoice,
  launch: LaunchOptions = {},
): string[] {
  // "host" passthrough needs KVM; under TCG "max" is the closest: every feature TCG can emulate.
  const cpu = spec.cpuModel === 'host' && accel.accelerator !== 'kvm' ? 'max' : spec.cpuModel;
  const uefi = spec.firmware === 'uefi';
  if (uefi && (!volumes.firmwareCode || !volumes.efiVars))
    throw new Error('a UEFI VM needs the resolved firmware code and variable store paths');
  const args = [
    '-name',
    `guest=${opt(spec.name)},debug-threads=on`,
    '-uuid',
    spec.id,
    '-machine',
    uefi ? `${spec.machine},pflash0=pflash0,pflash1=pflash1` : spec.machine,
    '-accel',
    accel.accelerator,
    '-cpu',
    cpu,
    '-smp',
    String(spec.vcpus),
    '-m',
    `${spec.memoryMiB}M`,
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    // The guest powering off leaves QEMU up in "shutdown" state, so a QEMU that is gone
    // without our quit can only mean a crash or a kill.
    '-no-shutdown',
    '-pidfile',
    paths.pidfile,
    '-chardev',
    `socket,id=qmp,path=${opt(paths.qmp)},server=on,wait=off`,
    '-mon',
    'chardev=qmp,mode=control',
    '-chardev',
    `socket,id=serial0,path=${opt(paths.serial)},server=on,wait=off,logfile=${opt(paths.consoleLog)},logappend=on`,
    '-serial',
    'chardev:serial0',
    '-chardev',
    `socket,id=qga0,path=${opt(paths.qga)},server=on,wait=off`,
    '-device',
    'virtio-serial-pci,id=virtio-serial0',
    '-device',
    'virtserialport,bus=virtio-serial0.0,chardev=qga0,name=org.qemu.guest_agent.0,id=qga0-port',
    '-vnc',
    '127.0.0.1:0,to=4000',
    '-object',
    'rng-random,id=rng0,filename=/dev/urandom',
    '-device',
    'virtio-rng-pci,rng=rng0',
  ];

  // On q35 a device on the root complex cannot be unplugged; disks sit behind PCIe root
  // ports instead, with spare ports so that disks can also be added while the VM runs.
  const q35 = spec.machine === 'q35';
  const ports = q35 ? Math.max(hotplugSlots, ...spec.disks.map((d, i) => diskSlot(d, i) + 1)) : 0;
  if (q35) {
    for (let slot = 0; slot < ports; slot++) {
      args.push('-device', `pcie-root-port,id=rp${slot},chassis=${slot + 1},port=${slot + 1}`);
    }
  }
  if (uefi) {
    args.push(
      '-blockdev',
      `driver=file,filename=${opt(volumes.firmwareCode!)},node-name=pflash0-file,read-only=on`,
      '-blockdev',
      'driver=raw,file=pflash0-file,node-name=pflash0,read-only=on',
      '-blockdev',
      `driver=file,filename=${opt(volumes.efiVars!)},node-name=pflash1-file,read-only=off`,
      '-blockdev',
      'driver=raw,file=pflash1-file,node-name=pflash1,read-only=off',
    );
  }

  // Direct kernel boot needs no boot order; otherwise the first disk and the CD-ROM, in the
  // order the spec asks (disk first unless said).
  const cdFirst = spec.cdrom !== undefined && spec.bootOrder === 'cd';
  const diskBoot = spec.boot ? null : cdFirst ? 2 : 1;
  const cdBoot = spec.boot ? null : cdFirst ? 1 : 2;
  spec.disks.forEach((disk, i) => {
    args.push(...diskArgs(disk, diskSlot(disk, i), volumes.disks[i], q35, i === 0 ? diskBoot : null));
  });

  if (volumes.seed) {
    // Behind a port of its own after the disks' ports, so the guest enumerates it after the
    // disks and the boot disk stays /dev/vda.
    if (q35) args.push('-device', `pcie-root-port,id=rp-seed,chassis=${ports + 1},port=${ports + 1}`);
    args.push(
      '-blockdev',
      `driver=file,filename=${opt(volumes.seed)},node-name=seed-file,read-only=on`,
      '-blockdev',
      'driver=raw,file=seed-file,node-name=seed,read-only=on',
      '-device',
      `virtio-blk-pci,drive=seed,id=seed-dev${q35 ? ',bus=rp-seed' : ''}`,
    );
  }

  if (spec.cdrom) {
    const n = cdromNodes;
    const medium = spec.cdrom.medium ? volumes.cdrom : undefined;
    if (spec.cdrom.medium && !medium) throw new Error('a CD-ROM medium needs its resolved path');
    if (medium) {
      args.push(
        '-blockdev',
        `driver=file,filename=${opt(medium)},node-name=${n.file},read-only=on`,
        '-blockdev',
        `driver=raw,file=${n.file},node-name=${n.format},read-only=on`,
      );
    }
    args.push(
      '-device',
      `ide-cd,bus=${q35 ? 'ide.0' : 'ide.1'},id=${n.device}${medium ? `,drive=${n.format}` : ''}${cdBoot !== null ? `,bootindex=${cdBoot}` : ''}`,
    );
  }

  const nicArgs = (nic: NicSpec, i: number) => [
    '-netdev',
    netdevOption(nic, nicSlot(nic, i), launch.taps?.[i] ?? null),
    '-device',
    deviceOption(nicDevice(nic, nicSlot(nic, i), q35)),
  ];
  spec.nics.forEach((nic, i) => {
    if (nic.network.mode !== 'network') args.push(...nicArgs(nic, i));
  });

  if (spec.boot) {
    if (!volumes.kernel) throw new Error('direct kernel boot needs the resolved kernel path');
    args.push('-kernel', volumes.kernel, '-append', spec.boot.cmdline);
    if (volumes.initrd) args.push('-initrd', volumes.initrd);
  }
  // A display for the VNC console (installers and firmware menus draw on it). Last, so the
  // devices above keep the PCI addresses they had before VMs had one.
  args.push('-device', 'VGA,id=video0');
  // NICs on managed networks, which can come and go while the VM runs, after everything that
  // was there before them; on q35 behind root ports of their own (no I/O space: virtio-net on
  // PCIe needs none, and the firmware has too little for many ports).
  if (q35) {
    for (let slot = 0; slot < nicSlots; slot++) {
      const c = 32 + slot;
      args.push('-device', `pcie-root-port,id=${nicNodes(slot).port},chassis=${c},port=${c},io-reserve=0`);
    }
  }
  spec.nics.forEach((nic, i) => {
    if (nic.network.mode === 'network') args.push(...nicArgs(nic, i));
  });
  // Everything above is the same on both ends of a migration: QEMU loads the state into
  // devices that must match the source's one for one, node names included.
  if (launch.incoming) args.push('-S', '-incoming', 'defer');
  return args;
}
