import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { vmSpecOf } from './vm-spec.ts';

const spec: VmSpec = {
  id: '0b6c2d1e-1f2a-4b3c-8d4e-5f6a7b8c9d0e',
  name: 'web-1',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 2,
  memoryMiB: 512,
  disks: [
    { slot: 0, format: 'qcow2', readonly: false, volume: { pool: 'local', path: 'vms/a/disk0.qcow2' } },
  ],
  nics: [{ mac: '52:54:00:00:00:01', network: { mode: 'user' } }],
};

test('a stored spec is read back as the VmSpec it was', () => {
  assert.deepEqual(vmSpecOf({ id: spec.id, spec: JSON.stringify(spec) }), spec);
});

test('a damaged stored spec is one clear error naming the VM and the field, not a wrong read later', () => {
  const cases: [string, RegExp][] = [
    ['{"id": "x"', /VM web-1 is damaged: not JSON/],
    [JSON.stringify({ ...spec, vcpus: '2' }), /VM web-1 is damaged: \/vcpus /],
    [JSON.stringify({ ...spec, disks: undefined }), /VM web-1 is damaged: .*disks/],
  ];
  for (const [text, message] of cases) {
    assert.throws(
      () => vmSpecOf({ name: 'web-1', spec: text }),
      (e: unknown) => e instanceof TernError && e.code === 'internal' && message.test(e.message),
    );
  }
});
