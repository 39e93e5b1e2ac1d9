import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmSpec } from '../../wire/vm.ts';
import { buildCommandLine } from './command-line.ts';

const spec: VmSpec = {
  id: '6f1c2b9e-8f0a-4c1e-9d3b-2a7e5c4d1f00',
  name: 'web-1',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 2,
  memoryMiB: 512,
  disks: [{ volume: { pool: 'local', path: 'vms/x/disk0.qcow2' }, format: 'qcow2', readonly: false }],
  nics: [{ mac: '52:54:00:12:34:56', network: { mode: 'user' } }],
  boot: { kernel: { pool: 'local', path: 'k' }, cmdline: 'console=ttyS0 root=/dev/vda' },
};
const paths = {
  qmp: '/r/qmp.sock',
  qga: '/r/qga.sock',
  serial: '/r/serial.sock',
  consoleLog: '/l/c.log',
  pidfile: '/r/pid',
};

function argValues(args: string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []));
}

test('host CPU becomes max under TCG and stays host under KVM', () => {
  const tcg = buildCommandLine(spec, { disks: ['/d0'], kernel: '/k' }, paths, {
    accelerator: 'tcg',
    reason: '',
  });
  assert.deepEqual(argValues(tcg, '-cpu'), ['max']);
  assert.deepEqual(argValues(tcg, '-accel'), ['tcg']);
  const kvm = buildCommandLine(spec, { disks: ['/d0'], kernel: '/k' }, paths, {
    accelerator: 'kvm',
    reason: '',
  });
  assert.deepEqual(argValues(kvm, '-cpu'), ['host']);
});

test('disks stop on ENOSPC, NICs carry their MAC, kernel boot is direct', () => {
  const args = buildCommandLine(spec, { disks: ['/d,0'], kernel: '/k', initrd: '/i' }, paths, {
    accelerator: 'tcg',
    reason: '',
  });
  const devices = argValues(args, '-device');
  assert.ok(devices.some((d) => d.startsWith('virtio-blk-pci,drive=disk0') && d.includes('werror=enospc')));
  assert.ok(argValues(args, '-blockdev')[0].includes('filename=/d,,0'), 'commas in paths are escaped');
  assert.ok(devices.some((d) => d.includes('mac=52:54:00:12:34:56')));
  assert.deepEqual(argValues(args, '-kernel'), ['/k']);
  assert.deepEqual(argValues(args, '-initrd'), ['/i']);
  assert.deepEqual(argValues(args, '-smp'), ['2']);
  assert.deepEqual(argValues(args, '-m'), ['512M']);
  assert.ok(args.includes('-no-shutdown'));
});

test('bridge NICs and seeds', () => {
  const s: VmSpec = {
    ...spec,
    boot: undefined,
    seed: { pool: 'local', path: 'seed.iso' },
    nics: [{ mac: '52:54:00:00:00:01', network: { mode: 'bridge', bridge: 'br0' } }],
  };
  const args = buildCommandLine(s, { disks: ['/d0'], seed: '/s.iso' }, paths, {
    accelerator: 'kvm',
    reason: '',
  });
  assert.deepEqual(argValues(args, '-netdev'), ['bridge,id=net0,br=br0']);
  assert.ok(argValues(args, '-device').some((d) => d.includes('bootindex=1')));
  assert.ok(argValues(args, '-blockdev').some((b) => b.includes('/s.iso') && b.includes('read-only=on')));
});

test('a NIC on a managed network opens the tap the agent plugged, with its MAC; none plugged is refused', () => {
  const s: VmSpec = {
    ...spec,
    nics: [
      { mac: '52:54:00:00:00:01', network: { mode: 'user' } },
      {
        mac: '02:7e:00:00:00:02',
        network: {
          mode: 'network',
          network: '6f1c2b9e-8f0a-4c1e-9d3b-2a7e5c4d1f01',
          bridge: 'tn6f1c2b9e',
          ip: '10.0.0.2',
          rules: null,
        },
      },
    ],
  };
  const volumes = { disks: ['/d0'], kernel: '/k' };
  const accel = { accelerator: 'kvm' as const, reason: '' };
  const args = buildCommandLine(s, volumes, paths, accel, { taps: [null, 'tt0123456789ab'] });
  assert.deepEqual(argValues(args, '-netdev'), [
    'user,id=net0',
    'tap,id=net1,ifname=tt0123456789ab,script=no,downscript=no',
  ]);
  assert.ok(
    argValues(args, '-device').includes(
      'virtio-net-pci,netdev=net1,id=net1-dev,mac=02:7e:00:00:00:02,bus=rpn1',
    ),
  );
  assert.throws(() => buildCommandLine(s, volumes, paths, accel), /needs its plugged tap/);
});

test('q35 disks sit behind hot-pluggable root ports, the seed behind the last one', () => {
  const s: VmSpec = { ...spec, seed: { pool: 'local', path: 'seed.iso' } };
  const args = buildCommandLine(s, { disks: ['/d0'], seed: '/s.iso', kernel: '/k' }, paths, {
    accelerator: 'tcg',
    reason: '',
  });
  const devices = argValues(args, '-device');
  const ports = devices.filter((d) => d.startsWith('pcie-root-port') && !d.includes('id=rpn'));
  assert.equal(ports.length, 9);
  assert.ok(devices.some((d) => d.startsWith('virtio-blk-pci,drive=disk0') && d.includes('bus=rp0')));
  assert.ok(devices.some((d) => d.startsWith('virtio-blk-pci,drive=seed') && d.includes('bus=rp-seed')));
  assert.ok(devices.indexOf(ports[ports.length - 1]) > devices.indexOf(ports[0]));
});

test('a migration target waits for its state, stopped, with the same devices as the source', () => {
  const accel = { accelerator: 'tcg' as const, reason: '' };
  const plain = buildCommandLine(spec, { disks: ['/d0'], kernel: '/k' }, paths, accel);
  const target = buildCommandLine(spec, { disks: ['/d0'], kernel: '/k' }, paths, accel, { incoming: true });
  assert.deepEqual(target.slice(0, plain.length), plain);
  assert.deepEqual(target.slice(plain.length), ['-S', '-incoming', 'defer']);
  assert.ok(!plain.includes('-incoming'));
});

const tcg = { accelerator: 'tcg' as const, reason: '' };
const bootable: VmSpec = { ...spec, boot: undefined };
const iso = { pool: 'local', path: 'images/debian.iso' };

test('a CD-ROM on q35 is an ide-cd on the built-in AHCI with stable node names; cd first boots it before the disk', () => {
  const args = buildCommandLine(
    { ...bootable, cdrom: { medium: iso }, bootOrder: 'cd' },
    { disks: ['/d0'], cdrom: '/p/images/debian.iso' },
    paths,
    tcg,
  );
  const devices = argValues(args, '-device');
  const cd = devices.find((d) => d.startsWith('ide-cd,'));
  assert.equal(cd, 'ide-cd,bus=ide.0,id=cd0-dev,drive=cd0,bootindex=1');
  assert.ok(devices.some((d) => d.startsWith('virtio-blk-pci,drive=disk0') && d.endsWith('bootindex=2')));
  const blockdevs = argValues(args, '-blockdev');
  assert.ok(blockdevs.includes('driver=file,filename=/p/images/debian.iso,node-name=cd0-file,read-only=on'));
  assert.ok(blockdevs.includes('driver=raw,file=cd0-file,node-name=cd0,read-only=on'));
});

test('disk first is the default boot order; an empty drive has no medium node; pc uses its IDE channel', () => {
  const args = buildCommandLine(
    { ...bootable, machine: 'pc', cdrom: { medium: null } },
    { disks: ['/d0'] },
    paths,
    tcg,
  );
  const devices = argValues(args, '-device');
  assert.ok(devices.includes('ide-cd,bus=ide.1,id=cd0-dev,bootindex=2'));
  assert.ok(devices.some((d) => d.startsWith('virtio-blk-pci,drive=disk0') && d.endsWith('bootindex=1')));
  assert.ok(!argValues(args, '-blockdev').some((b) => b.includes('cd0')));
});

test('direct kernel boot gives the CD-ROM no boot index', () => {
  const args = buildCommandLine(
    { ...spec, cdrom: { medium: iso }, bootOrder: 'cd' },
    { disks: ['/d0'], kernel: '/k', cdrom: '/iso' },
    paths,
    tcg,
  );
  assert.ok(argValues(args, '-device').includes('ide-cd,bus=ide.0,id=cd0-dev,drive=cd0'));
});

test('UEFI: OVMF code as read-only pflash0, the VM own variable store as writable pflash1', () => {
  const args = buildCommandLine(
    { ...bootable, firmware: 'uefi', efiVars: { pool: 'local', path: 'vms/x/efivars.fd' } },
    { disks: ['/d0'], firmwareCode: '/ovmf/CODE.fd', efiVars: '/p/vms/x/efivars.fd' },
    paths,
    tcg,
  );
  assert.deepEqual(argValues(args, '-machine'), ['q35,pflash0=pflash0,pflash1=pflash1']);
  const blockdevs = argValues(args, '-blockdev');
  assert.ok(blockdevs.includes('driver=file,filename=/ovmf/CODE.fd,node-name=pflash0-file,read-only=on'));
  assert.ok(blockdevs.includes('driver=raw,file=pflash0-file,node-name=pflash0,read-only=on'));
  assert.ok(
    blockdevs.includes('driver=file,filename=/p/vms/x/efivars.fd,node-name=pflash1-file,read-only=off'),
  );
  assert.ok(blockdevs.includes('driver=raw,file=pflash1-file,node-name=pflash1,read-only=off'));
  assert.throws(() => buildCommandLine({ ...bootable, firmware: 'uefi' }, { disks: ['/d0'] }, paths, tcg));
  const bios = buildCommandLine(bootable, { disks: ['/d0'] }, paths, tcg);
  assert.deepEqual(argValues(bios, '-machine'), ['q35']);
  assert.ok(!argValues(bios, '-blockdev').some((b) => b.includes('pflash')));
});

test('every VM has a VGA display for its VNC console, added after the other devices', () => {
  const args = buildCommandLine(spec, { disks: ['/d0'], kernel: '/k' }, paths, tcg);
  const devices = argValues(args, '-device');
  // Only what came after it (the NIC slots for managed networks) follows it.
  const after = devices.slice(devices.indexOf('VGA,id=video0') + 1);
  assert.ok(after.length > 0 && after.every((d) => d.startsWith('pcie-root-port,id=rpn')));
});

test('NICs on managed networks come last, at their slots: q35 root ports of their own, fixed pc addresses', () => {
  const nic = (mac: string, slot?: number) => ({
    mac,
    network: {
      mode: 'network' as const,
      network: '6f1c2b9e-8f0a-4c1e-9d3b-2a7e5c4d1f01',
      bridge: 'tn6f1c2b9e',
      ip: null,
      rules: null,
    },
    ...(slot === undefined ? {} : { slot }),
  });
  const s: VmSpec = { ...spec, nics: [nic('02:00:00:00:00:01'), nic('02:00:00:00:00:02', 5)] };
  const opts = { taps: ['tt000000000001', 'tt000000000002'] };
  const q35 = argValues(buildCommandLine(s, { disks: ['/d0'], kernel: '/k' }, paths, tcg, opts), '-device');
  assert.equal(q35.filter((d) => d.startsWith('pcie-root-port,id=rpn')).length, 8, 'a port for every slot');
  assert.deepEqual(q35.slice(-2), [
    'virtio-net-pci,netdev=net0,id=net0-dev,mac=02:00:00:00:00:01,bus=rpn0',
    'virtio-net-pci,netdev=net5,id=net5-dev,mac=02:00:00:00:00:02,bus=rpn5',
  ]);
  const pc = buildCommandLine({ ...s, machine: 'pc' }, { disks: ['/d0'], kernel: '/k' }, paths, tcg, opts);
  assert.ok(!argValues(pc, '-device').some((d) => d.startsWith('pcie-root-port')));
  assert.ok(
    argValues(pc, '-device').includes(
      'virtio-net-pci,netdev=net5,id=net5-dev,mac=02:00:00:00:00:02,bus=pci.0,addr=0x1d',
    ),
  );
  assert.ok(argValues(pc, '-netdev').includes('tap,id=net5,ifname=tt000000000002,script=no,downscript=no'));
});
