import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Template } from '../../wire/template.ts';
import { planVm, randomMac, seedMetaData } from './plan.ts';

const tiny: Template = {
  name: 'tiny',
  description: '',
  machine: 'q35',
  vcpus: 1,
  memoryMiB: 256,
  disk: { pool: 'local', path: 'templates/tiny/disk.qcow2' },
  diskSizeBytes: 512 * 1024 ** 2,
  boot: { kernel: { pool: 'local', path: 'templates/tiny/vmlinuz' }, cmdline: 'root=/dev/vda' },
  generalization: null,
  risk: null,
  firmware: 'bios',
  os: null,
  createdAt: '2026-01-01T00:00:00.000Z',
};
const id = '11111111-2222-4333-8444-555555555555';
const mac = () => '52:54:00:00:00:01';

test('a template clone is an overlay on the template disk with its boot settings', () => {
  const p = planVm({ name: 'web-1', memoryMiB: 384 }, tiny, id, 'local', mac);
  assert.deepEqual(p.volumes[0].backing, tiny.disk);
  assert.equal(p.volumes[0].volume.path, `vms/${id}/disk0.qcow2`);
  assert.equal(p.spec.memoryMiB, 384);
  assert.equal(p.spec.vcpus, 1);
  assert.deepEqual(p.spec.boot, tiny.boot);
  assert.deepEqual(p.spec.nics, [{ mac: '52:54:00:00:00:01', network: { mode: 'user' } }]);
  assert.equal(p.diskSizes[0], tiny.diskSizeBytes);
  assert.match(seedMetaData(p.spec), /local-hostname: web-1/);
});

test('without a template a disk size is required', () => {
  assert.throws(() => planVm({ name: 'x' }, null, id, 'local', mac), /diskGiB is required/);
  const p = planVm({ name: 'x', diskGiB: 1, extraDisksGiB: [0.5] }, null, id, 'local', mac);
  assert.deepEqual(p.diskSizes, [1024 ** 3, 512 * 1024 ** 2]);
  assert.equal(p.spec.boot, undefined);
});

test('a template disk cannot shrink', () => {
  assert.throws(() => planVm({ name: 'x', diskGiB: 0.1 }, tiny, id, 'local', mac), /smaller/);
});

test("MACs use Tern's locally administered prefix, not QEMU's that hand-made VMs use", () => {
  assert.match(
    randomMac(() => Buffer.from([1, 2, 255])),
    /^02:74:6e:01:02:ff$/,
  );
});

const image = {
  name: 'deb',
  kind: 'disk' as const,
  format: 'qcow2',
  sourceFormat: 'qcow2',
  host: 'h1',
  volume: { pool: 'shared', path: 'images/deb.qcow2' },
  virtualBytes: 2 * 1024 ** 3,
  actualBytes: 1,
  sha256: null,
  createdAt: '2026-01-01T00:00:00.000Z',
};
const iso = {
  ...image,
  name: 'inst',
  kind: 'iso' as const,
  volume: { pool: 'shared', path: 'images/inst.iso' },
};

test('an image VM is a linked clone on the image in its pool, grown only; an ISO install boots the CD first', () => {
  const p = planVm({ name: 'a', diskGiB: 4 }, null, id, 'local', mac, id, { image });
  assert.deepEqual(p.volumes[0].backing, image.volume);
  assert.equal(p.volumes[0].volume.pool, 'shared');
  assert.equal(p.clone, 'linked');
  assert.equal(p.spec.cdrom, undefined);
  assert.throws(
    () => planVm({ name: 'a', diskGiB: 1 }, null, id, 'local', mac, id, { image }),
    /disks only grow/,
  );
  assert.throws(() => planVm({ name: 'a' }, tiny, id, 'local', mac, id, { image }), /not both/);

  const install = planVm({ name: 'b', diskGiB: 8 }, null, id, 'local', mac, id, { iso });
  assert.deepEqual(install.spec.cdrom, { medium: iso.volume });
  assert.equal(install.spec.bootOrder, 'cd');
  assert.equal(install.clone, null);
  const withDisk = planVm({ name: 'c' }, null, id, 'local', mac, id, { image, iso });
  assert.equal(withDisk.spec.bootOrder, 'disk');
  assert.throws(
    () => planVm({ name: 'd', diskGiB: 1, bootOrder: 'cd' }, null, id, 'local', mac),
    /needs a CD-ROM/,
  );
});

test('UEFI: a variable store volume beside the disks, not one of them; a template passes its firmware on', () => {
  const p = planVm({ name: 'e', diskGiB: 1, firmware: 'uefi' }, null, id, 'local', mac);
  assert.equal(p.spec.firmware, 'uefi');
  assert.deepEqual(p.spec.efiVars, { pool: 'local', path: `vms/${id}/efivars.fd` });
  assert.equal(p.spec.disks.length, 1);
  assert.deepEqual(p.volumes.at(-1), { volume: p.spec.efiVars, format: 'raw', content: 'uefi-vars' });
  const fromTemplate = planVm({ name: 'f' }, { ...tiny, firmware: 'uefi' }, id, 'local', mac);
  assert.equal(fromTemplate.spec.firmware, 'uefi');
  assert.equal(planVm({ name: 'g' }, tiny, id, 'local', mac).spec.firmware, undefined);
});

test("a NIC on a managed network: cloud-init is given the address its network's DHCP leases to its MAC; other NICs ask DHCP", () => {
  const nics = [
    {
      spec: {
        mac: '02:74:6e:00:00:01',
        network: { mode: 'network' as const, network: id, bridge: 'tn11111111', ip: '10.1.0.5', rules: null },
      },
      address: { address: '10.1.0.5/24', gateway: '10.1.0.1', dns: ['10.1.0.1'] },
    },
    { spec: { mac: '02:74:6e:00:00:02', network: { mode: 'user' as const } }, address: null },
  ];
  const p = planVm({ name: 'n1' }, tiny, id, 'local', mac, id, { nics });
  assert.deepEqual(
    p.spec.nics,
    nics.map((n) => n.spec),
  );
  assert.equal(
    p.seed.networkConfig,
    [
      'version: 2',
      'ethernets:',
      '  nic0:',
      '    match:',
      '      macaddress: "02:74:6e:00:00:01"',
      '    set-name: eth0',
      '    addresses: [10.1.0.5/24]',
      '    gateway4: 10.1.0.1',
      '    nameservers:',
      '      addresses: [10.1.0.1]',
      '  nic1:',
      '    match:',
      '      macaddress: "02:74:6e:00:00:02"',
      '    set-name: eth1',
      '    dhcp4: true',
      '',
    ].join('\n'),
  );
  assert.throws(
    () => planVm({ name: 'n1', ip: { address: '10.1.0.9/24' } }, tiny, id, 'local', mac, id, { nics }),
    /gets from there: give it with ip= on the NIC/,
  );
  assert.equal(
    planVm({ name: 'n2' }, tiny, id, 'local', mac).seed.networkConfig,
    undefined,
    'no address: no network-config',
  );
});
