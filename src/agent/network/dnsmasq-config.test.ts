import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dhcpHostsFile, dnsmasqConf, hostsFile, wantsDnsmasq } from './dnsmasq-config.ts';
import { testNic, testSpec } from './test-specs.ts';

const paths = { conf: '/s/c', dhcpHosts: '/s/d', hosts: '/s/h', leases: '/s/l', pid: '/s/p', log: '/s/g' };

test('dnsmasq binds to the bridge only, serves the range and fixed leases, and names every NIC', () => {
  const spec = testSpec('nat', 1, { leases: [testNic(1, 1), testNic(1, 2)] });
  const conf = dnsmasqConf(spec, paths).split('\n');
  for (const line of [
    'bind-interfaces',
    'interface=tn00000001',
    'except-interface=lo',
    'listen-address=10.1.0.1',
    'dhcp-range=10.1.0.100,10.1.0.199,255.255.255.0,1h',
    'dhcp-hostsfile=/s/d',
    'addn-hosts=/s/h',
    'dhcp-leasefile=/s/l',
    'pid-file=/s/p',
    'dhcp-option=option:router,10.1.0.1',
    'domain=lab',
  ])
    assert.ok(conf.includes(line), line);
  assert.equal(dhcpHostsFile(spec), '02:aa:01:00:00:01,10.1.0.11,vm1\n02:aa:01:00:00:02,10.1.0.12,vm2\n');
  assert.equal(hostsFile(spec), '10.1.0.11 vm1\n10.1.0.12 vm2\n');
});

test('isolated and overlay networks hand out no route and resolve only their own names', () => {
  for (const type of ['isolated', 'overlay'] as const) {
    const conf = dnsmasqConf(testSpec(type, 2), paths).split('\n');
    assert.ok(conf.includes('dhcp-option=option:router'));
    assert.ok(conf.includes('no-resolv'));
  }
});

test('fixed leases only: a static range; no gateway: no dnsmasq', () => {
  const spec = testSpec('bridge', 3, { dhcp: null, leases: [testNic(3, 1)] });
  assert.ok(dnsmasqConf(spec, paths).includes('dhcp-range=10.3.0.0,static,255.255.255.0,1h'));
  assert.equal(wantsDnsmasq(spec), true);
  assert.equal(wantsDnsmasq(testSpec('bridge', 3, { dhcp: null })), false);
  assert.equal(
    wantsDnsmasq(testSpec('bridge', 3, { gateway: null, dhcp: null, leases: [testNic(3, 1)] })),
    false,
  );
});
