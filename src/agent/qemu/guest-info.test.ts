import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  guestLimits,
  guestMessage,
  sanitizeBootId,
  sanitizeDisks,
  sanitizeHostname,
  sanitizeInterfaces,
  sanitizeMachineId,
  sanitizeOsInfo,
  usefulAddresses,
} from './guest-info.ts';

test('a 100 KB kernel version is truncated and noted, not fatal', () => {
  const huge = 'x'.repeat(100_000);
  const r = sanitizeOsInfo({ 'kernel-release': huge, id: 'tern-tiny', name: 'Tern' });
  assert.equal(r.value?.kernelRelease?.length, guestLimits.text);
  assert.equal(r.value?.id, 'tern-tiny');
  assert.match(r.notes[0], /truncated/);
});

test('malformed os info is dropped', () => {
  assert.equal(sanitizeOsInfo('nonsense').value, null);
  assert.deepEqual(sanitizeOsInfo({ id: 42 }).value, {});
});

test('control characters are removed from the hostname', () => {
  assert.equal(sanitizeHostname({ 'host-name': 'web\u001b[31m-1\n' }).value, 'web[31m-1');
  assert.equal(sanitizeHostname(null).value, null);
});

test('interfaces are bounded and addresses filtered', () => {
  const many = Array.from({ length: 100 }, (_, i) => ({
    name: `eth${i}`,
    'ip-addresses': [
      { 'ip-address': '10.0.2.15', prefix: 24 },
      { 'ip-address': '<script>', prefix: 1 },
    ],
  }));
  const r = sanitizeInterfaces(many);
  assert.equal(r.value.length, guestLimits.interfaces);
  assert.deepEqual(r.value[0].addresses, ['10.0.2.15/24']);
  assert.match(r.notes[0], /kept/);
});

test('useful addresses skip loopback and link-local', () => {
  const ips = usefulAddresses([
    { name: 'lo', addresses: ['127.0.0.1/8'] },
    { name: 'eth0', addresses: ['10.0.2.15/24', 'fe80::1/64', 'fec0::5054:ff:fe12:3456/64'] },
  ]);
  assert.deepEqual(ips, ['10.0.2.15', 'fec0::5054:ff:fe12:3456']);
});

test('machine ids are 32 hex digits or nothing', () => {
  const id = '0123456789abcdef0123456789abcdef';
  assert.equal(sanitizeMachineId({ 'buf-b64': Buffer.from(`${id}\n`).toString('base64') }).value, id);
  assert.equal(sanitizeMachineId({ 'buf-b64': Buffer.from('x'.repeat(32)).toString('base64') }).value, null);
  assert.equal(sanitizeMachineId({ 'buf-b64': 'A'.repeat(10_000) }).value, null);
  assert.equal(sanitizeMachineId(null).value, null);
});

test('disks are whole devices with plain names', () => {
  const r = sanitizeDisks([
    { name: '/dev/vdb', partition: false },
    { name: '/dev/vda1', partition: true },
    { name: '/dev/vda', partition: false },
    { name: '/dev/../etc/passwd', partition: false },
    42,
  ]);
  assert.deepEqual(r.value, ['/dev/vda', '/dev/vdb']);
  assert.deepEqual(sanitizeDisks('x').value, []);
});

test("a guest agent's message is made inert and bounded; one that says nothing is null", () => {
  assert.equal(
    guestMessage('Failed to connect to bus\r\n\u001b[2J\u009b31m  now\u0007'),
    'Failed to connect to bus [2J 31m  now',
  );
  const long = guestMessage('y'.repeat(10_000));
  assert.equal(long, `${'y'.repeat(guestLimits.text)}…`);
  for (const nothing of [undefined, null, 42, { desc: 'x' }, '', ' \n\t '])
    assert.equal(guestMessage(nothing), null);
});

test('a boot id is a UUID or nothing', () => {
  const id = '0f6a9a5e-7c1e-4c55-9a43-1f0a5b1f3a01';
  const b64 = (t: string) => ({ 'buf-b64': Buffer.from(t).toString('base64'), count: t.length, eof: true });
  assert.deepEqual(sanitizeBootId(b64(`${id}\n`)), { value: id, notes: [] });
  assert.equal(sanitizeBootId(b64('not-a-boot-id\n')).value, null);
  assert.equal(sanitizeBootId({ 'buf-b64': 'x'.repeat(1000) }).value, null);
  assert.equal(sanitizeBootId(null).value, null);
});
