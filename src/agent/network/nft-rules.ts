/**
 * The nftables rules of one network on one host, as text for `nft -f`: pure, no I/O.
 *
 * Each network has two tables, `inet tern_<bridge>` (what the host routes, masquerades and
 * accepts from the bridge) and `bridge tern_<bridge>` (the ports: anti-spoofing and security
 * rules, and for an overlay what must not cross the tunnel). A table is written whole, as
 * "create, delete, define" in one transaction, so applying is atomic and idempotent, and
 * teardown is deleting the two tables.
 *
 * This kernel has no connection tracking in the bridge family, so port rules are stateless:
 * replies are told apart by what they look like (a TCP segment that is not a connection's
 * opening SYN, ICMP echo replies and errors, DNS and DHCP answers). Routed traffic (inet
 * family, with bridge netfilter) is stateful.
 */
import type { HostNetworkSpec, PortRules } from '../../wire/network.ts';

/** A VM's NIC as the bridge table filters it. */
export interface PortPlan {
  tap: string;
  mac: string;
  /** null: the NIC has no fixed address, its source address is not checked. */
  ip: string | null;
  /** null: anti-spoofing only, everything else allowed. */
  rules: PortRules | null;
}

type Rule = PortRules['rules'][number];

/** The name of both tables of a network: nft identifiers take no dash or dot. */
export function tableName(bridge: string): string {
  return `tern_${bridge.replace(/[^A-Za-z0-9_]/g, '_')}`;
}

/** The name of an overlay's VXLAN device: the VNI is unique on a host, as the kernel wants. */
export function vxlanName(vni: number): string {
  return `vx${vni}`;
}

const chainOf = (dir: 'in' | 'out', tap: string) => `${dir}_${tap.replace(/[^A-Za-z0-9_]/g, '_')}`;
const q = (name: string) => `"${name}"`;

/** Replaces a table by `body` in one transaction (the empty `table` makes the delete safe). */
function replaceTable(family: string, name: string, body: string[]): string {
  return [
    `table ${family} ${name} {}`,
    `delete table ${family} ${name}`,
    `table ${family} ${name} {`,
    ...body,
    '}',
  ]
    .join('\n')
    .concat('\n');
}

/** Deletes both tables of a network; applying it twice is fine. */
export function removeNetworkRules(bridge: string): string {
  const name = tableName(bridge);
  return [
    `table inet ${name} {}`,
    `delete table inet ${name}`,
    `table bridge ${name} {}`,
    `delete table bridge ${name}`,
  ]
    .join('\n')
    .concat('\n');
}

/** Both tables of a network with all its ports, as one transaction. */
export function networkRules(spec: HostNetworkSpec, ports: readonly PortPlan[]): string {
  return routedTable(spec) + bridgeTable(spec, ports);
}

/** The inet table: what the host routes for the network and what it accepts from it. */
export function routedTable(spec: HostNetworkSpec): string {
  const br = q(spec.bridge);
  const body: string[] = [];
  if (spec.type === 'nat') {
    body.push(
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname ${br} oifname != ${br} ip saddr ${spec.subnet} accept`,
      `    oifname ${br} iifname != ${br} ct state established,related accept`,
      `    oifname ${br} iifname != ${br} counter drop`,
      `    iifname ${br} oifname != ${br} counter drop`,
      '  }',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    oifname != ${br} ip saddr ${spec.subnet} ip daddr != ${spec.subnet} masquerade`,
      '  }',
    );
  } else if (spec.type === 'isolated' || spec.type === 'overlay') {
    // Nothing is routed to or from the bridge (bridge netfilter shows bridged traffic with the
    // bridge as both ends: that stays allowed), and the host answers DHCP and DNS only.
    body.push(
      '  chain forward {',
      '    type filter hook forward priority filter; policy accept;',
      `    iifname ${br} oifname != ${br} counter drop`,
      `    oifname ${br} iifname != ${br} counter drop`,
      '  }',
      '  chain input {',
      '    type filter hook input priority filter; policy accept;',
      `    iifname ${br} udp dport { 53, 67 } accept`,
      `    iifname ${br} tcp dport 53 accept`,
      `    iifname ${br} counter drop`,
      '  }',
    );
  }
  return replaceTable('inet', tableName(spec.bridge), body);
}

/** The bridge table: the ports' chains, and for an overlay what must not cross the tunnel. */
export function bridgeTable(spec: HostNetworkSpec, ports: readonly PortPlan[]): string {
  const name = tableName(spec.bridge);
  const body = [
    '  map out_ports { type ifname : verdict; }',
    '  map in_ports { type ifname : verdict; }',
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    ...overlayGuards(spec).map((r) => `    ${r}`),
    '    iifname vmap @out_ports',
    '    oifname vmap @in_ports',
    '  }',
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    ...(spec.overlay
      ? [`    iifname ${q(vxlanName(spec.overlay.vni))} ether saddr ${spec.gatewayMac} drop`]
      : []),
    '    iifname vmap @out_ports',
    '  }',
    '  chain output {',
    '    type filter hook output priority filter; policy accept;',
    // What the host itself sends (its gateway's ARP, DHCP and DNS answers) stays on this host.
    ...(spec.overlay ? [`    oifname ${q(vxlanName(spec.overlay.vni))} drop`] : []),
    '    oifname vmap @in_ports',
    '  }',
  ];
  for (const p of ports) body.push(...portChains(spec, p).map((l) => `  ${l}`));
  let text = replaceTable('bridge', name, body);
  if (ports.length > 0) text += portElements(name, ports);
  return text;
}

/** The anycast gateway: ARP for it, DHCP, and frames from or to it never cross the tunnel. */
function overlayGuards(spec: HostNetworkSpec): string[] {
  if (!spec.overlay) return [];
  const vx = q(vxlanName(spec.overlay.vni));
  const rules = [
    `oifname ${vx} udp dport { 67, 68 } drop`,
    `iifname ${vx} udp dport { 67, 68 } drop`,
    `iifname ${vx} ether saddr ${spec.gatewayMac} drop`,
    `oifname ${vx} ether daddr ${spec.gatewayMac} drop`,
  ];
  if (spec.gateway) {
    rules.push(
      `oifname ${vx} arp daddr ip ${spec.gateway} drop`,
      `iifname ${vx} arp daddr ip ${spec.gateway} drop`,
      `iifname ${vx} arp saddr ip ${spec.gateway} drop`,
      `oifname ${vx} ip daddr ${spec.gateway} drop`,
      `iifname ${vx} ip saddr ${spec.gateway} drop`,
    );
  }
  return rules;
}

function portElements(table: string, ports: readonly PortPlan[]): string {
  const out = ports.map((p) => `${q(p.tap)} : jump ${chainOf('out', p.tap)}`).join(', ');
  const inn = ports.map((p) => `${q(p.tap)} : jump ${chainOf('in', p.tap)}`).join(', ');
  return `add element bridge ${table} out_ports { ${out} }\nadd element bridge ${table} in_ports { ${inn} }\n`;
}

/**
 * One port's two chains. A chain ends a packet it allows with `return`, never `accept`: a frame
 * from one VM to another passes the sender's `out` chain, then the receiver's `in` chain.
 */
export function portChains(spec: HostNetworkSpec, p: PortPlan): string[] {
  const rules = p.rules ?? { inbound: 'allow', outbound: 'allow', rules: [] };
  const gw = spec.gateway;
  const out = [
    `ether saddr != ${p.mac} drop`,
    `arp saddr ether != ${p.mac} drop`,
    ...(p.ip ? [`arp saddr ip != { ${p.ip}, 0.0.0.0 } drop`] : []),
    'meta protocol arp return',
    // The networks are IPv4 only: anything else from a VM is dropped.
    'meta protocol != ip drop',
    'ip saddr 0.0.0.0 udp sport 68 udp dport 67 return',
    ...(p.ip ? [`ip saddr != ${p.ip} drop`] : []),
    ...(gw ? [`ip daddr ${gw} udp dport { 53, 67 } return`, `ip daddr ${gw} tcp dport 53 return`] : []),
    ...rules.rules.filter((r) => r.direction === 'out').flatMap((r) => ruleText(r, 'daddr')),
    ...(rules.outbound === 'deny' ? [...replies(), 'counter drop'] : []),
  ];
  const inn = [
    'meta protocol arp return',
    'meta protocol != ip drop',
    'udp sport 67 udp dport 68 return',
    ...(gw ? [`ip saddr ${gw} udp sport 53 return`, `ip saddr ${gw} tcp sport 53 return`] : []),
    ...rules.rules.filter((r) => r.direction === 'in').flatMap((r) => ruleText(r, 'saddr')),
    ...(rules.inbound === 'deny' ? [...replies(), 'udp sport 53 return', 'counter drop'] : []),
  ];
  return [
    `chain ${chainOf('out', p.tap)} {`,
    ...out.map((r) => `  ${r}`),
    '}',
    `chain ${chainOf('in', p.tap)} {`,
    ...inn.map((r) => `  ${r}`),
    '}',
  ];
}

/** Without conntrack in the bridge family: what a reply to an allowed exchange looks like. */
function replies(): string[] {
  return [
    'tcp flags & (syn | ack) != syn return',
    'icmp type { echo-reply, destination-unreachable, time-exceeded } return',
  ];
}

/** An allow rule; `peer` is the other end's address (saddr inbound, daddr outbound). */
function ruleText(r: Rule, peer: 'saddr' | 'daddr'): string[] {
  if (r.peers && r.peers.length === 0) return [];
  const parts: string[] = [];
  if (r.peers) parts.push(`ip ${peer} { ${r.peers.join(', ')} }`);
  if (r.protocol !== 'any') parts.push(`meta l4proto ${r.protocol}`);
  if (r.ports && (r.protocol === 'tcp' || r.protocol === 'udp')) {
    const range = r.ports.from === r.ports.to ? `${r.ports.from}` : `${r.ports.from}-${r.ports.to}`;
    parts.push(`${r.protocol} dport ${range}`);
  }
  parts.push('return');
  return [parts.join(' ')];
}

/**
 * Adds one port to a network's bridge table, leaving the others alone; `replacing`: the port is
 * there already and its chains are rewritten (in the same transaction).
 */
export function addPortRules(spec: HostNetworkSpec, p: PortPlan, replacing: boolean): string {
  const table = tableName(spec.bridge);
  const lines: string[] = [];
  let chain = '';
  for (const line of portChains(spec, p)) {
    const open = /^chain (\S+) \{$/.exec(line);
    if (open) {
      chain = open[1];
      lines.push(`add chain bridge ${table} ${chain}`);
    } else if (line !== '}') lines.push(`add rule bridge ${table} ${chain} ${line.trim()}`);
  }
  const before = replacing ? removePortRules(spec.bridge, p.tap) : '';
  return `${before}${lines.join('\n')}\n${portElements(table, [p])}`;
}

/** Removes one port from a network's bridge table. */
export function removePortRules(bridge: string, tap: string): string {
  const table = tableName(bridge);
  return [
    `delete element bridge ${table} out_ports { ${q(tap)} }`,
    `delete element bridge ${table} in_ports { ${q(tap)} }`,
    `delete chain bridge ${table} ${chainOf('out', tap)}`,
    `delete chain bridge ${table} ${chainOf('in', tap)}`,
  ]
    .join('\n')
    .concat('\n');
}
