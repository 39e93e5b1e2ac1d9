import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkAddressPlan, checkRequested, intToIp, ipToInt, nextFree, parseSubnet } from './ipam.ts';

const plan = { subnet: '10.1.0.0/24', gateway: '10.1.0.1', dhcp: { start: '10.1.0.100', end: '10.1.0.199' } };

test('addresses convert both ways, and bad ones are refused', () => {
  assert.equal(ipToInt('10.1.0.255'), 0x0a0100ff);
  assert.equal(intToIp(0xffffffff), '255.255.255.255');
  for (const bad of ['10.1.0', '10.1.0.256', '10.01.0.1', 'a.b.c.d', '10.1.0.1.2'])
    assert.throws(() => ipToInt(bad), /no IPv4 address/, bad);
});

test('a subnet with host bits set, or too small or too large, is refused', () => {
  assert.equal(parseSubnet('10.1.0.0/24').size, 256);
  assert.throws(() => parseSubnet('10.1.0.7/24'), /host bits set: the network is 10.1.0.0\/24/);
  assert.throws(() => parseSubnet('10.1.0.0/31'), /\/8 to a \/30/);
  assert.throws(() => parseSubnet('10.0.0.0/7'), /\/8 to a \/30/);
  assert.throws(() => parseSubnet('10.1.0.0'), /no IPv4 prefix/);
});

test('the gateway and the DHCP range must be host addresses of the subnet, the gateway outside the range', () => {
  assert.equal(checkAddressPlan(plan).cidr, '10.1.0.0/24');
  assert.throws(() => checkAddressPlan({ ...plan, gateway: '10.2.0.1' }), /no host address/);
  assert.throws(() => checkAddressPlan({ ...plan, gateway: '10.1.0.255' }), /no host address/);
  assert.throws(
    () => checkAddressPlan({ ...plan, dhcp: { start: '10.1.0.200', end: '10.1.0.100' } }),
    /not an ordered range/,
  );
  assert.throws(() => checkAddressPlan({ ...plan, gateway: '10.1.0.150' }), /lies in the DHCP range/);
});

test('the next free address skips the network address, the gateway, the DHCP range and addresses in use', () => {
  assert.equal(nextFree(plan, new Set()), '10.1.0.2');
  assert.equal(nextFree(plan, new Set(['10.1.0.2', '10.1.0.3'])), '10.1.0.4');
  const below = new Set(Array.from({ length: 98 }, (_, i) => `10.1.0.${i + 2}`));
  assert.equal(nextFree(plan, below), '10.1.0.200');
  assert.equal(nextFree({ ...plan, gateway: null, dhcp: null }, new Set()), '10.1.0.1');
});

test('a full subnet is a conflict, never a shared address', () => {
  const small = { subnet: '10.9.0.0/30', gateway: '10.9.0.1', dhcp: null };
  assert.equal(nextFree(small, new Set()), '10.9.0.2');
  assert.throws(
    () => nextFree(small, new Set(['10.9.0.2'])),
    (e: Error & { code?: string }) => e.code === 'conflict' && /no address is left/.test(e.message),
  );
});

test('a requested address is checked against the subnet and the addresses in use', () => {
  const used = new Set(['10.1.0.5']);
  assert.equal(checkRequested(plan, '10.1.0.6', used), '10.1.0.6');
  assert.equal(checkRequested(plan, '10.1.0.150', used), '10.1.0.150', 'a fixed lease may sit in the range');
  assert.throws(() => checkRequested(plan, '10.1.1.6', used), /not in the network's subnet 10.1.0.0\/24/);
  assert.throws(() => checkRequested(plan, '10.1.0.0', used), /network or broadcast/);
  assert.throws(() => checkRequested(plan, '10.1.0.255', used), /network or broadcast/);
  assert.throws(() => checkRequested(plan, '10.1.0.1', used), /the network's gateway/);
  assert.throws(
    () => checkRequested(plan, '10.1.0.5', used),
    (e: Error & { code?: string }) => e.code === 'conflict' && /in use/.test(e.message),
  );
});
