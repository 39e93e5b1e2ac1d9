import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmSpec } from '../../wire/vm.ts';
import { replicaName, replicaSpec } from './replica-spec.ts';

const primary: VmSpec = {
  id: '11111111-1111-4111-8111-111111111111',
  name: 'web-1',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 2,
  memoryMiB: 1024,
  disks: [
    { volume: { pool: 'default', path: 'vms/web-1/disk0.qcow2' }, format: 'qcow2', readonly: false },
    { volume: { pool: 'default', path: 'images/tools.iso' }, format: 'raw', readonly: true },
    { volume: { pool: 'fast', path: 'vms/web-1/data.raw' }, format: 'raw', readonly: false, slot: 5 },
  ],
  nics: [],
};

test("a replica's writable disks point at their files of the point, read-only ones stay", () => {
  const r = {
    id: '22222222-2222-4222-8222-222222222222',
    name: 'web-1-replica',
    pool: 'dr',
    replicationId: 'rid',
  };
  const spec = replicaSpec(primary, r, '2026-12-07T18-00-00Z');
  assert.equal(spec.id, r.id);
  assert.equal(spec.name, 'web-1-replica');
  assert.deepEqual(
    spec.disks.map((d) => [d.volume.pool, d.volume.path, d.format, d.slot]),
    [
      ['dr', 'replicas/rid/disk0/2026-12-07T18-00-00Z.qcow2', 'qcow2', 0],
      ['default', 'images/tools.iso', 'raw', undefined],
      ['dr', 'replicas/rid/disk2/2026-12-07T18-00-00Z.qcow2', 'qcow2', 5],
    ],
  );
  assert.match(replicaSpec(primary, r, null).disks[0].volume.path, /no-point-yet\.qcow2$/);
});

test('a replica name stays a valid name', () => {
  assert.equal(replicaName('web-1'), 'web-1-replica');
  const long = replicaName(`${'a'.repeat(54)}-b-cdef`);
  assert.ok(long.length <= 63 && long.endsWith('-replica') && !long.includes('--'), long);
});
