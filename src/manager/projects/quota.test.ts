import assert from 'node:assert/strict';
import { test } from 'node:test';
import { quotaRefusal, usageOf } from './quota.ts';

const quota = { vms: 3, vcpus: 8, memoryMiB: 4096, diskBytes: 10 * 2 ** 30 };
const usage = usageOf([
  { vcpus: 2, memoryMiB: 1024, diskBytes: 2 ** 30 },
  { vcpus: 4, memoryMiB: 1024, diskBytes: 2 ** 30 },
]);

test('usage adds up the VMs', () => {
  assert.deepEqual(usage, { vms: 2, vcpus: 6, memoryMiB: 2048, diskBytes: 2 * 2 ** 30 });
});

test('a request that fits is allowed, up to the limit exactly', () => {
  assert.equal(
    quotaRefusal('dev', quota, usage, { vms: 1, vcpus: 2, memoryMiB: 2048, diskBytes: 8 * 2 ** 30 }),
    null,
  );
});

test('the refusal names the project, the quota, the use and the ask', () => {
  assert.equal(
    quotaRefusal('dev', quota, usage, { vms: 1, vcpus: 4 }),
    'project dev would exceed its vCPU quota: 6 of 8 in use, 4 more asked',
  );
  assert.match(
    quotaRefusal('dev', quota, usage, { memoryMiB: 4096 }) ?? '',
    /memory quota: 2048 MiB of 4096 MiB/,
  );
  assert.match(quotaRefusal('dev', { ...quota, vms: 2 }, usage, { vms: 1 }) ?? '', /VM quota: 2 of 2 in use/);
});

test('no limit means no refusal, and shrinking is always allowed', () => {
  const open = { vms: null, vcpus: null, memoryMiB: null, diskBytes: null };
  assert.equal(quotaRefusal('dev', open, usage, { vms: 100, vcpus: 1000 }), null);
  assert.equal(quotaRefusal('dev', { ...quota, vcpus: 1 }, usage, { vcpus: -2 }), null);
});
