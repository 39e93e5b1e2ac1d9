import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chooseAccelerator, readCpuFacts } from './accelerator.ts';

test('KVM needs both the CPU flag and the device', () => {
  assert.equal(chooseAccelerator(['fpu', 'vmx'], 'usable').accelerator, 'kvm');
  assert.equal(chooseAccelerator(['fpu', 'svm'], 'usable').accelerator, 'kvm');
  assert.equal(chooseAccelerator(['fpu'], 'usable').accelerator, 'tcg');
  assert.match(chooseAccelerator(['vmx'], 'missing').reason, /missing/);
  assert.equal(chooseAccelerator(['svm'], 'no-access').accelerator, 'tcg');
});

test('cpuinfo is parsed', () => {
  const info =
    'processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 svm\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\n';
  assert.deepEqual(readCpuFacts(info), {
    model: 'AMD EPYC',
    vendor: 'AuthenticAMD',
    flags: ['fpu', 'sse2', 'svm'],
    cores: 2,
  });
  assert.equal(readCpuFacts('processor\t: 0\n').vendor, 'unknown');
});
