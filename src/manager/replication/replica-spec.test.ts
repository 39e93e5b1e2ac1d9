import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostFacts } from '../../wire/host.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { replicaName, replicaSpec, unreachableFiles } from './replica-spec.ts';

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

test('a replica must reach the files it would run from as they are', () => {
  const facts = (name: string, pools: [string, boolean][]): HostFacts =>
    ({
      hostname: name,
      pools: pools.map(([n, shared]) => ({ name: n, shared, path: `/${n}`, totalBytes: 1, freeBytes: 1 })),
    }) as HostFacts;
  const a = facts('a', [
    ['local', false],
    ['nfs', true],
  ]);
  const b = facts('b', [
    ['local', false],
    ['nfs', true],
  ]);
  const kernelIn = (pool: string): VmSpec =>
    ({
      name: 'v',
      disks: [{ volume: { pool: 'local', path: 'vms/v/disk0.qcow2' }, format: 'qcow2', readonly: false }],
      boot: { kernel: { pool, path: 'k' }, cmdline: '' },
    }) as unknown as VmSpec;
  assert.equal(unreachableFiles(kernelIn('nfs'), a, b), null);
  assert.match(
    unreachableFiles(kernelIn('local'), a, b) ?? '',
    /boot kernel \(local:k\) is in a pool host b cannot reach/,
  );
  assert.match(unreachableFiles(kernelIn('nfs'), a, null) ?? '', /the other site cannot reach/);
  const ro = {
    name: 'v',
    disks: [
      { volume: { pool: 'local', path: 'd0' }, format: 'qcow2', readonly: false },
      { volume: { pool: 'local', path: 'iso' }, format: 'raw', readonly: true },
    ],
  } as unknown as VmSpec;
  assert.match(unreachableFiles(ro, a, b) ?? '', /read-only disk 1/);
  // A site's replica drops read-only disks; disks that are copied need nothing.
  assert.equal(unreachableFiles(ro, a, null), null);
});
