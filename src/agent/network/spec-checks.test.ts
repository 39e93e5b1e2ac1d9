import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostProblem, specProblem } from './spec-checks.ts';
import { testNic, testSpec } from './test-specs.ts';

test('a spec that contradicts itself or another network is refused with the reason', () => {
  const cases: [string, Parameters<typeof specProblem>[0], RegExp][] = [
    ['gateway outside', testSpec('nat', 1, { gateway: '10.9.0.1' }), /not a host address/],
    ['gateway is the network', testSpec('nat', 1, { gateway: '10.1.0.0' }), /not a host address/],
    ['range outside', testSpec('nat', 1, { dhcp: { start: '10.1.0.10', end: '10.1.1.10' } }), /DHCP range/],
    [
      'range backwards',
      testSpec('nat', 1, { dhcp: { start: '10.1.0.20', end: '10.1.0.10' } }),
      /ends before/,
    ],
    ['DHCP without gateway', testSpec('nat', 1, { gateway: null }), /needs the gateway/],
    [
      'lease outside',
      testSpec('nat', 1, { leases: [{ ...testNic(1, 1), ip: '10.2.0.5' }] }),
      /not a host address/,
    ],
    [
      'lease on the gateway',
      testSpec('nat', 1, { leases: [{ ...testNic(1, 1), ip: '10.1.0.1' }] }),
      /gateway/,
    ],
    [
      'two leases one MAC',
      testSpec('nat', 1, { leases: [testNic(1, 1), { ...testNic(1, 1), ip: '10.1.0.50' }] }),
      /MAC/,
    ],
    [
      'two leases one IP',
      testSpec('nat', 1, { leases: [testNic(1, 1), { ...testNic(1, 2), ip: '10.1.0.11' }] }),
      /address/,
    ],
    ['overlay without settings', testSpec('overlay', 1, { overlay: null }), /overlay settings/],
    ['uplink on nat', testSpec('nat', 1, { uplink: 'eth1' }), /uplink/],
    ['multicast gateway MAC', testSpec('nat', 1, { gatewayMac: '01:00:5e:00:00:01' }), /unicast/],
  ];
  for (const [name, spec, want] of cases) assert.match(specProblem(spec, []) ?? '', want, name);
  assert.equal(specProblem(testSpec('overlay', 1, { leases: [testNic(1, 1)] }), []), null);
  const other = testSpec('overlay', 2);
  assert.match(
    specProblem(testSpec('nat', 3, { bridge: other.bridge }), [other]) ?? '',
    /belongs to network net2/,
  );
  assert.match(specProblem(testSpec('overlay', 3, { overlay: other.overlay }), [other]) ?? '', /VNI 1002/);
});

test('a VLAN on a host without 802.1Q is refused with the reason', () => {
  const caps = { vlan: false, vxlan: true, nftables: true, dnsmasq: true, reasons: [] };
  assert.match(hostProblem(testSpec('bridge', 1, { vlan: 10 }), caps) ?? '', /no 802\.1Q VLAN devices/);
  assert.equal(hostProblem(testSpec('bridge', 1), caps), null);
  assert.match(hostProblem(testSpec('overlay', 1), { ...caps, vxlan: false }) ?? '', /VXLAN/);
});
