import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocateMac, checkRequestedMac, gatewayMacPrefix, nicMacPrefix } from './mac.ts';

const bytes =
  (...b: number[]) =>
  () =>
    Buffer.from(b);

test('a MAC is locally administered, unicast, under Tern’s prefix, from the random bytes', () => {
  const mac = allocateMac(new Set(), bytes(1, 2, 255));
  assert.equal(mac, '02:74:6e:01:02:ff');
  const first = Number.parseInt(nicMacPrefix.slice(0, 2), 16);
  assert.equal(first & 2, 2, 'locally administered');
  assert.equal(first & 1, 0, 'unicast');
  assert.equal(Number.parseInt(gatewayMacPrefix.slice(0, 2), 16) & 3, 2);
});

test('never two alike: a MAC in use is skipped, also across the end of the space', () => {
  const used = new Set(['02:74:6e:01:02:ff', '02:74:6e:01:03:00']);
  assert.equal(allocateMac(used, bytes(1, 2, 255)), '02:74:6e:01:03:01');
  assert.equal(allocateMac(new Set(['02:74:6e:ff:ff:ff']), bytes(255, 255, 255)), '02:74:6e:00:00:00');
  const many = new Set<string>();
  for (let i = 0; i < 300; i++) many.add(allocateMac(many, bytes(7, 7, 7)));
  assert.equal(many.size, 300);
});

test('a requested MAC is checked: well formed, unicast, not a gateway’s, not in use', () => {
  assert.equal(checkRequestedMac('02:AA:bb:cc:dd:ee', new Set()), '02:aa:bb:cc:dd:ee');
  assert.throws(() => checkRequestedMac('02:aa:bb:cc:dd', new Set()), /no MAC address/);
  assert.throws(() => checkRequestedMac('03:aa:bb:cc:dd:ee', new Set()), /multicast/);
  assert.throws(() => checkRequestedMac('06:74:6e:00:00:01', new Set()), /keeps for gateways/);
  assert.throws(
    () => checkRequestedMac('02:aa:bb:cc:dd:ee', new Set(['02:aa:bb:cc:dd:ee'])),
    (e: Error & { code?: string }) => e.code === 'conflict',
  );
});
