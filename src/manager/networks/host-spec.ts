/**
 * What a host is told to realize for one network: everything decided here, from the inventory.
 * An overlay's VXLAN reaches every other host by its cluster address (head-end replication, no
 * multicast); the leases are every NIC of the network on every host, so DNS names them all
 * while each host's DHCP answers only its own VMs. Pure.
 */
import type { HostNetworkSpec, Lease } from '../../wire/network.ts';
import type { NetworkTable } from '../db/schema.ts';
import { addressPlanOf } from './store.ts';

/** VXLAN's IANA port. */
export const vxlanPort = 4789;

/** A host as an overlay sees it: its id and the IPv4 address its agent is reached at, if any. */
export interface OverlayHost {
  id: string;
  ipv4: string | null;
}

/** The IPv4 address of a host's cluster address (`https://10.0.0.5:9443`), or null for a name. */
export function ipv4Of(address: string): string | null {
  try {
    const host = new URL(address).hostname;
    return /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? host : null;
  } catch {
    return null;
  }
}

/** Why a host cannot have an overlay network, or null. */
export function overlayRefusal(host: OverlayHost): string | null {
  return host.ipv4 === null
    ? 'an overlay needs an IPv4 cluster address for the VXLAN tunnel; this host joined by a name'
    : null;
}

export function hostNetworkSpec(
  n: NetworkTable,
  leases: readonly Lease[],
  host: OverlayHost,
  hosts: readonly OverlayHost[],
): HostNetworkSpec {
  const overlay =
    n.type === 'overlay' && n.vni !== null && host.ipv4 !== null
      ? {
          vni: n.vni,
          local: host.ipv4,
          // Several simulated hosts may share an address; a host never tunnels to itself.
          peers: [
            ...new Set(
              hosts.map((h) => h.ipv4).filter((ip): ip is string => ip !== null && ip !== host.ipv4),
            ),
          ].sort(),
          port: vxlanPort,
        }
      : null;
  return {
    id: n.id,
    name: n.name,
    type: n.type as HostNetworkSpec['type'],
    bridge: n.bridge,
    subnet: n.subnet,
    gateway: n.gateway,
    gatewayMac: n.gatewayMac,
    dns: JSON.parse(n.dns) as string[],
    dhcp: addressPlanOf(n).dhcp,
    domain: n.domain,
    uplink: n.uplink,
    vlan: n.vlan,
    mtu: n.mtu,
    overlay,
    leases: [...leases].sort((a, b) => a.mac.localeCompare(b.mac)),
  };
}
