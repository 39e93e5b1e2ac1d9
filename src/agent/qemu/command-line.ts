/**
 * Builds the QEMU command line from a VM spec. Pure: paths are resolved by the caller, so the
 * same spec always gives the same argv and the mapping is tested without QEMU.
 */
import type { VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';

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
}

/** QEMU's option syntax escapes a comma by doubling it. */
function opt(value: string): string {
  return value.replaceAll(',', ',,');
}

export function buildCommandLine(
  spec: VmSpec,
  volumes: ResolvedVolumes,
  paths: RuntimePaths,
  accel: AcceleratorChoice,
): string[] {
  // "host" passthrough needs KVM; under TCG "max" is the closest: every feature TCG can emulate.
  const cpu = spec.cpuModel === 'host' && accel.accelerator !== 'kvm' ? 'max' : spec.cpuModel;
  const args = [
    '-name',
    `guest=${opt(spec.name)},debug-threads=on`,
    '-uuid',
    spec.id,
    '-machine',
    spec.machine,
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

  spec.disks.forEach((disk, i) => {
    const file = volumes.disks[i];
    const ro = disk.readonly ? 'on' : 'off';
    args.push(
      '-blockdev',
      `driver=file,filename=${opt(file)},node-name=disk${i}-file,read-only=${ro},discard=unmap`,
      '-blockdev',
      `driver=${disk.format},file=disk${i}-file,node-name=disk${i},read-only=${ro},discard=unmap`,
      '-device',
      // Stop on ENOSPC instead of reporting the error to the guest: a full pool pauses the VM
      // rather than corrupting its filesystem.
      `virtio-blk-pci,drive=disk${i},id=disk${i}-dev,werror=enospc,rerror=report${i === 0 && !spec.boot ? ',bootindex=1' : ''}`,
    );
  });

  if (volumes.seed) {
    args.push(
      '-blockdev',
      `driver=file,filename=${opt(volumes.seed)},node-name=seed-file,read-only=on`,
      '-blockdev',
      'driver=raw,file=seed-file,node-name=seed,read-only=on',
      '-device',
      'virtio-blk-pci,drive=seed,id=seed-dev',
    );
  }

  spec.nics.forEach((nic, i) => {
    const netdev =
      nic.network.mode === 'user' ? `user,id=net${i}` : `bridge,id=net${i},br=${opt(nic.network.bridge)}`;
    args.push('-netdev', netdev, '-device', `virtio-net-pci,netdev=net${i},id=net${i}-dev,mac=${nic.mac}`);
  });

  if (spec.boot) {
    if (!volumes.kernel) throw new Error('direct kernel boot needs the resolved kernel path');
    args.push('-kernel', volumes.kernel, '-append', spec.boot.cmdline);
    if (volumes.initrd) args.push('-initrd', volumes.initrd);
  }
  return args;
}
