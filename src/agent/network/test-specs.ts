/** Network specs for the tests of this folder and of test/network-*.test.ts. */
import type { HostNetworkSpec, NetworkType } from '../../wire/network.ts';

/** A network of `type` on 10.<n>.0.0/24 with gateway .1, bridge `tn0000000<n>`. */
export function testSpec(type: NetworkType, n: number, more: Partial<HostNetworkSpec> = {}): HostNetworkSpec {
  const hex = n.toString(16).padStart(2, '0');
  return {
    id: `000000${hex}-0000-4000-8000-000000000000`,
    name: `net${n}`,
    type,
    bridge: `tn000000${hex}`,
    subnet: `10.${n}.0.0/24`,
    gateway: `10.${n}.0.1`,
    gatewayMac: `02:00:0a:${hex}:00:01`,
    dns: [],
    dhcp: { start: `10.${n}.0.100`, end: `10.${n}.0.199` },
    domain: 'lab',
    uplink: null,
    vlan: null,
    mtu: type === 'overlay' ? 1450 : 1500,
    overlay:
      type === 'overlay'
        ? { vni: 1000 + n, local: '10.255.0.1', peers: ['10.255.0.1', '10.255.0.2'], port: 4789 }
        : null,
    leases: [],
    ...more,
  };
}

/** The MAC and address of guest `i` of network `n`. */
export function testNic(n: number, i: number): { mac: string; ip: string; hostname: string } {
  const hex = (v: number) => v.toString(16).padStart(2, '0');
  return { mac: `02:aa:${hex(n)}:00:00:${hex(i)}`, ip: `10.${n}.0.${10 + i}`, hostname: `vm${i}` };
}
