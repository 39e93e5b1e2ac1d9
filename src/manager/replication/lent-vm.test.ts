import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { VmSpec } from '../../wire/vm.ts';
import { planLentVm, testSubnet } from './lent-vm.ts';

const replica: VmSpec = {
  id: '00000000-0000-4000-8000-000000000001',
  name: 'web-replica',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 1,
  memoryMiB: 512,
  disks: [
    {
      volume: { pool: 'local', path: 'replicas/r/disk0/2026-01-01T00-00-00Z.qcow2' },
      format: 'qcow2',
      readonly: false,
      slot: 0,
    },
    {
      volume: { pool: 'local', path: 'replicas/r/disk1/2026-01-01T00-00-00Z.qcow2' },
      format: 'qcow2',
      readonly: false,
      slot: 3,
    },
  ],
  nics: [],
  seed: { pool: 'local', path: 'vms/x/seed.iso' },
  firmware: 'uefi',
  efiVars: { pool: 'local', path: 'vms/x/efivars.fd' },
};

test('a VM on a lent point: overlays under its own directory, slots kept, no seed, fresh UEFI variables', () => {
  const id = '00000000-0000-4000-8000-000000000002';
  const nics = [{ mac: '02:74:6e:00:00:01', network: { mode: 'user' as const } }];
  const plan = planLentVm(
    replica,
    [
      { name: 'disk0', sizeBytes: 1024 },
      { name: 'disk1', sizeBytes: 2048 },
    ],
    { id, name: 'web-test', pool: 'local', point: 'P', nics },
  );
  assert.deepEqual(plan.disks, [
    { name: 'disk0', target: { pool: 'local', path: `vms/${id}/disk0-P.qcow2` } },
    { name: 'disk1', target: { pool: 'local', path: `vms/${id}/disk1-P.qcow2` } },
  ]);
  assert.deepEqual(
    plan.spec.disks.map((d) => [d.volume.path, d.slot]),
    [
      [`vms/${id}/disk0-P.qcow2`, 0],
      [`vms/${id}/disk1-P.qcow2`, 3],
    ],
  );
  assert.equal(plan.spec.seed, undefined);
  assert.deepEqual(plan.spec.efiVars, { pool: 'local', path: `vms/${id}/efivars.fd` });
  assert.deepEqual(plan.extra, [{ volume: plan.spec.efiVars, format: 'raw', content: 'uefi-vars' }]);
  assert.deepEqual(plan.diskSizes, [1024, 2048]);
  assert.equal(plan.spec.name, 'web-test');
  assert.deepEqual(plan.spec.nics, nics);
});

test('a point disk the VM does not have is refused', () => {
  assert.throws(
    () =>
      planLentVm(replica, [{ name: 'disk7', sizeBytes: 1 }], {
        id: replica.id,
        name: 'x',
        pool: 'local',
        point: 'P',
        nics: [],
      }),
    /disk7 matches no disk/,
  );
});

test("a test network's subnet overlaps no network of the cluster", () => {
  assert.equal(testSubnet([]), '10.254.0.0/24');
  assert.equal(testSubnet(['10.254.0.0/24', '10.254.1.0/25']), '10.254.2.0/24');
  assert.equal(testSubnet(['10.254.0.0/23', '192.168.1.0/24']), '10.254.2.0/24');
  assert.throws(() => testSubnet(['10.0.0.0/8']), /no free \/24/);
});
