/** Whether a network spec makes sense before anything is touched: pure, no I/O. */
import type { HostNetworkSpec, NetworkCapabilities } from '../../wire/network.ts';
import { inSubnet, ipToNumber, parseCidr } from './ipv4.ts';

/** What is wrong with the spec itself (a bad request), or null. */
export function specProblem(spec: HostNetworkSpec, others: readonly HostNetworkSpec[]): string | null {
  const { network, length } = parseCidr(spec.subnet);
  const broadcast = ipToNumber(network) + 2 ** (32 - length) - 1;
  const usable = (ip: string) =>
    inSubnet(ip, spec.subnet) && ipToNumber(ip) !== ipToNumber(network) && ipToNumber(ip) !== broadcast;
  if (spec.gateway && !usable(spec.gateway))
    return `gateway ${spec.gateway} is not a host address of ${spec.subnet}`;
  if (spec.dhcp) {
    if (!spec.gateway) return 'DHCP needs the gateway address: the hosts serve it from there';
    if (!usable(spec.dhcp.start) || !usable(spec.dhcp.end))
      return `the DHCP range is not inside ${spec.subnet}`;
    if (ipToNumber(spec.dhcp.start) > ipToNumber(spec.dhcp.end))
      return 'the DHCP range ends before it starts';
  }
  const macs = new Set<string>();
  const ips = new Set<string>();
  for (const l of spec.leases) {
    if (!usable(l.ip)) return `lease ${l.mac} → ${l.ip} is not a host address of ${spec.subnet}`;
    if (l.ip === spec.gateway) return `lease ${l.mac} takes the gateway address ${l.ip}`;
    if (macs.has(l.mac)) return `two leases for MAC ${l.mac}`;
    if (ips.has(l.ip)) return `two leases for address ${l.ip}`;
    macs.add(l.mac);
    ips.add(l.ip);
  }
  if ((spec.type === 'overlay') !== (spec.overlay !== null))
    return 'an overlay network, and only one, has overlay settings';
  if (spec.uplink && spec.type !== 'bridge') return 'only a bridge network has an uplink';
  if (spec.gatewayMac === '00:00:00:00:00:00' || Number.parseInt(spec.gatewayMac.slice(0, 2), 16) % 2 === 1)
    return `gateway MAC ${spec.gatewayMac} is not a unicast address`;
  for (const o of others) {
    if (o.id === spec.id) continue;
    if (o.bridge === spec.bridge) return `bridge ${spec.bridge} belongs to network ${o.name}`;
    if (spec.uplink && o.uplink === spec.uplink) return `uplink ${spec.uplink} is network ${o.name}'s`;
    if (spec.overlay && o.overlay?.vni === spec.overlay.vni)
      return `VNI ${spec.overlay.vni} belongs to network ${o.name}`;
  }
  return null;
}

/** Why this host cannot realize the spec (it stays recorded as failed), or null. */
export function hostProblem(spec: HostNetworkSpec, caps: NetworkCapabilities): string | null {
  if (!caps.nftables) return 'this host cannot use nftables';
  if (spec.vlan !== null && !caps.vlan)
    return `this host's kernel has no 802.1Q VLAN devices or bridge VLAN filtering: VLAN ${spec.vlan} cannot be realized here`;
  if (spec.vlan !== null) return 'VLAN tags are not realized by this agent yet';
  if (spec.overlay && !caps.vxlan) return "this host's kernel has no VXLAN devices";
  if ((spec.dhcp || spec.leases.length > 0) && spec.gateway && !caps.dnsmasq)
    return 'dnsmasq is missing on this host (install dnsmasq-base)';
  return null;
}
