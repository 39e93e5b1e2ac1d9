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

test('MACs use the QEMU prefix', () => {
  assert.match(
    randomMac(() => Buffer.from([1, 2, 255])),
    /^52:54:00:01:02:ff$/,
  );
});
