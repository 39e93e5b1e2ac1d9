import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyGuestInfo, type Vm } from '../../wire/vm.ts';
import { vmAlerts } from './rules.ts';

const vm = (state: Vm['state'], stateReason: string | null): Vm => ({
  id: '00000000-0000-4000-8000-000000000001',
  name: 'db-1',
  host: 'local',
  state,
  stateReason,
  template: null,
  clone: null,
  clientMachineId: null,
  vcpus: 1,
  memoryMiB: 256,
  cpuMode: 'compat',
  ha: { restart: 'none', priority: 'medium', order: 100, delayS: 0 },
  cpuModel: 'qemu64',
  disks: [],
  nics: [],
  image: null,
  firmware: 'bios',
  cdrom: null,
  guest: emptyGuestInfo(),
  ipAddresses: [],
  vncPort: null,
  ownerId: null,
  project: null,
  createdAt: '',
  updatedAt: '',
});

test('a storage-full pause is a critical alert that says what to do', () => {
  const [a] = vmAlerts(vm('paused', 'storage full: disk disk1 cannot grow'));
  assert.equal(a.id, 'vm:00000000-0000-4000-8000-000000000001:storage-full');
  assert.equal(a.severity, 'critical');
  assert.match(a.message, /Free space .*\(tern vm resume db-1\)/);
});

test('a disk QEMU found corrupt is a critical alert while the VM runs on', () => {
  const [a] = vmAlerts(
    vm('running', 'disk image corrupt: disk 0 (local:vms/db-1/disk0.qcow2): bad L2 entry'),
  );
  assert.equal(a.id, 'vm:00000000-0000-4000-8000-000000000001:corrupt');
  assert.equal(a.severity, 'critical');
  assert.match(a.message, /disk 0 .*I\/O errors.*qemu-img check/);
});

test('an unreachable VM warns that its guest may still run', () => {
  const [a] = vmAlerts(vm('unreachable', 'QEMU runs (pid 7) but its monitor does not answer'));
  assert.equal(a.severity, 'warning');
  assert.match(a.message, /may still run.*--force/);
});

test('running and paused-by-request VMs raise nothing; crashes warn', () => {
  assert.deepEqual(vmAlerts(vm('running', null)), []);
  assert.deepEqual(vmAlerts(vm('paused', 'paused by request')), []);
  assert.equal(vmAlerts(vm('crashed', 'QEMU ended'))[0].severity, 'warning');
});
