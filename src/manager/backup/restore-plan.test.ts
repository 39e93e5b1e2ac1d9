import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BackupDiskResult } from '../../wire/backup.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { nicRequestsOf, planInPlace, planNewVm } from './restore-plan.ts';

const spec: VmSpec = {
  id: '11111111-1111-4111-8111-111111111111',
  name: 'web',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 2,
  memoryMiB: 1024,
  disks: [
    { volume: { pool: 'local', path: 'vms/old/disk0.qcow2' }, format: 'qcow2', readonly: false },
    { volume: { pool: 'lib', path: 'isos/x.raw' }, format: 'raw', readonly: true },
    { volume: { pool: 'local', path: 'vms/old/disk2.raw' }, format: 'raw', readonly: false, slot: 5 },
  ],
  nics: [
    { mac: '52:54:00:00:00:01', network: { mode: 'user' } },
    { mac: '52:54:00:00:00:02', network: { mode: 'bridge', bridge: 'br0' } },
  ],
  seed: { pool: 'local', path: 'vms/old/seed.iso' },
  firmware: 'uefi',
  efiVars: { pool: 'local', path: 'vms/old/efivars.fd' },
  cdrom: { medium: { pool: 'lib', path: 'isos/y.iso' } },
};

const disk = (name: string, sizeBytes: number): BackupDiskResult => ({
  name,
  sizeBytes,
  mode: 'full',
  fullReason: null,
  dirtyBytes: 0,
  readBytes: 0,
  chunks: 1,
  newChunks: 1,
  newBytes: 1,
});

test('a new VM from a backup: its disks new qcow2 volumes of the backed-up sizes on their slots, no seed, fresh UEFI vars, an empty CD-ROM', () => {
  const id = '22222222-2222-4222-8222-222222222222';
  const plan = planNewVm(spec, [disk('disk0', 1 << 30), disk('disk2', 1 << 20)], {
    id,
    name: 'web-restored',
    pool: 'fast',
    nics: [],
  });
  assert.equal(plan.spec.id, id);
  assert.equal(plan.spec.name, 'web-restored');
  assert.deepEqual(
    plan.spec.disks.map((d) => [d.volume.pool, d.volume.path, d.format, d.slot]),
    [
      ['fast', `vms/${id}/disk0.qcow2`, 'qcow2', 0],
      ['fast', `vms/${id}/disk2.qcow2`, 'qcow2', 5],
    ],
  );
  assert.equal(plan.spec.seed, undefined);
  assert.deepEqual(plan.spec.efiVars, { pool: 'fast', path: `vms/${id}/efivars.fd` });
  assert.deepEqual(plan.spec.cdrom, { medium: null });
  assert.deepEqual(plan.diskSizes, [1 << 30, 1 << 20]);
  assert.deepEqual(
    plan.volumes.map((v) => [v.volume.path, v.format, v.sizeBytes ?? v.content]),
    [
      [`vms/${id}/disk0.qcow2`, 'qcow2', 1 << 30],
      [`vms/${id}/disk2.qcow2`, 'qcow2', 1 << 20],
      [`vms/${id}/efivars.fd`, 'raw', 'uefi-vars'],
    ],
  );
  assert.deepEqual(
    plan.targets.map((t) => [t.disk, t.volume.path]),
    [
      ['disk0', `vms/${id}/disk0.qcow2`],
      ['disk2', `vms/${id}/disk2.qcow2`],
    ],
  );
  assert.throws(
    () => planNewVm(spec, [disk('disk7', 1)], { id, name: 'x', pool: 'p', nics: [] }),
    /backup disk disk7 matches no disk/,
  );
});

test('in place: onto the same disks at the same size, refused when a disk changed size or is gone', () => {
  const sizes = [1 << 30, 0, 1 << 20];
  const targets = planInPlace(spec, sizes, [disk('disk0', 1 << 30), disk('disk2', 1 << 20)]);
  assert.deepEqual(
    targets.map((t) => [t.disk, t.volume.path, t.format]),
    [
      ['disk0', 'vms/old/disk0.qcow2', 'qcow2'],
      ['disk2', 'vms/old/disk2.raw', 'raw'],
    ],
  );
  assert.throws(
    () => planInPlace(spec, [2 << 30, 0, 1 << 20], [disk('disk0', 1 << 30)]),
    /restore as a new VM/,
  );
  assert.throws(() => planInPlace(spec, sizes, [disk('disk1', 1)]), /no writable disk 1/);
  assert.throws(() => planInPlace(spec, sizes, [disk('disk4', 1)]), /no writable disk 4/);
});

test('NICs are asked for again as they were: same networks, new MACs', () => {
  assert.deepEqual(nicRequestsOf(spec), [{ mode: 'user' }, { mode: 'bridge', bridge: 'br0' }]);
});
