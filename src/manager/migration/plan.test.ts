import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { HostFacts } from '../../wire/host.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { planMove } from './plan.ts';

const facts = (hostname: string): HostFacts => ({
  hostname,
  driver: 'qemu',
  accelerator: 'kvm',
  acceleratorReason: '',
  cpuModel: 'x',
  cpuVendor: 'GenuineIntel',
  cpuFlags: [],
  cores: 4,
  memoryMiB: 8192,
  pools: [
    { name: 'local', path: '/p/local', shared: false, totalBytes: 1, freeBytes: 1 },
    { name: 'shared', path: '/p/shared', shared: true, totalBytes: 1, freeBytes: 1 },
  ],
  versions: {},
  uefi: true,
});

const spec: VmSpec = {
  id: '6f1c2b9e-8f0a-4c1e-9d3b-2a7e5c4d1f00',
  name: 'v',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 1,
  memoryMiB: 512,
  disks: [{ volume: { pool: 'local', path: 'vms/v/disk0.qcow2' }, format: 'qcow2', readonly: false }],
  nics: [],
};

test('a UEFI VM on local storage moves with its variable store made anew on the target', () => {
  const local = planMove(
    { ...spec, firmware: 'uefi', efiVars: { pool: 'local', path: 'vms/v/efivars.fd' } },
    facts('a'),
    facts('b'),
    { mode: 'live' },
  );
  assert.ok(local.ok);
  assert.deepEqual(local.spec.efiVars, { pool: 'local', path: 'vms/v/efivars.fd' });
  assert.ok(local.mirrored.some((m) => m.from.path === 'vms/v/efivars.fd' && m.format === 'raw'));
  const quick = planMove(
    { ...spec, firmware: 'uefi', efiVars: { pool: 'local', path: 'vms/v/efivars.fd' } },
    facts('a'),
    facts('b'),
    { mode: 'quick' },
  );
  assert.equal(quick.ok, false);
  const shared = planMove(
    { ...spec, firmware: 'uefi', efiVars: { pool: 'shared', path: 'vms/v/efivars.fd' } },
    facts('a'),
    facts('b'),
    { mode: 'live' },
  );
  assert.ok(shared.ok);
  assert.deepEqual(
    shared.mirrored.map((m) => m.from.path),
    ['vms/v/disk0.qcow2'],
  );
});

test("a CD-ROM's medium must be reachable from the target; an empty drive moves", () => {
  const local = planMove(
    { ...spec, cdrom: { medium: { pool: 'local', path: 'images/x.iso' } } },
    facts('a'),
    facts('b'),
    {
      mode: 'live',
    },
  );
  assert.match(!local.ok ? local.reason : '', /CD-ROM's medium .* eject it first/);
  assert.equal(
    planMove({ ...spec, cdrom: { medium: null } }, facts('a'), facts('b'), { mode: 'live' }).ok,
    true,
  );
});
