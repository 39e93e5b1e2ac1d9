/**
 * dnsmasq's files for one network on one host: pure, no I/O. The main file changes only with
 * the network's shape (a restart); the leases and names change with the network's NICs and are
 * re-read on SIGHUP (dhcp-hostsfile and addn-hosts are).
 */
import type { HostNetworkSpec } from '../../wire/network.ts';
import { parseCidr } from './ipv4.ts';

export interface DnsmasqPaths {
  conf: string;
  /** dhcp-hostsfile: `MAC,IP,NAME` per fixed lease. */
  dhcpHosts: string;
  /** addn-hosts: the names DNS answers. */
  hosts: string;
  leases: string;
  pid: string;
  log: string;
}

/** Whether the network needs a dnsmasq on a host: it has the hosts' address and hands out some. */
export function wantsDnsmasq(spec: HostNetworkSpec): boolean {
  return spec.gateway !== null && (spec.dhcp !== null || spec.leases.length > 0);
}

export function dnsmasqConf(spec: HostNetworkSpec, paths: DnsmasqPaths): string {
  const { netmask, network } = parseCidr(spec.subnet);
  const gw = spec.gateway!;
  // isolated and overlay networks route nowhere: no default route, and DNS answers the
  // network's own names only (a forwarding resolver would be a way out).
  const routed = spec.type === 'nat' || spec.type === 'bridge';
  const lines = [
    `# Tern network ${spec.name} (${spec.id}); written by the agent, rewritten on every change.`,
    `pid-file=${paths.pid}`,
    `log-facility=${paths.log}`,
    // Its files live in the agent's state directory, which only root may enter.
    'user=root',
    'group=root',
    'bind-interfaces',
    `interface=${spec.bridge}`,
    'except-interface=lo',
    `listen-address=${gw}`,
    'no-hosts',
    `addn-hosts=${paths.hosts}`,
    ...(routed ? [] : ['no-resolv']),
    ...(spec.domain ? [`domain=${spec.domain}`, `local=/${spec.domain}/`, 'expand-hosts'] : []),
    spec.dhcp
      ? `dhcp-range=${spec.dhcp.start},${spec.dhcp.end},${netmask},1h`
      : `dhcp-range=${network},static,${netmask},1h`,
    `dhcp-hostsfile=${paths.dhcpHosts}`,
    `dhcp-leasefile=${paths.leases}`,
    'dhcp-authoritative',
    'dhcp-no-override',
    routed ? `dhcp-option=option:router,${gw}` : 'dhcp-option=option:router',
    `dhcp-option=option:dns-server,${(spec.dns.length > 0 ? spec.dns : [gw]).join(',')}`,
    `dhcp-option=option:mtu,${spec.mtu}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function dhcpHostsFile(spec: HostNetworkSpec): string {
  return spec.leases.map((l) => `${l.mac},${l.ip},${l.hostname}\n`).join('');
}

/** Every NIC of the network by name (on every host: DNS names them all), and the gateway. */
export function hostsFile(spec: HostNetworkSpec): string {
  return spec.leases.map((l) => `${l.ip} ${l.hostname}\n`).join('');
}
