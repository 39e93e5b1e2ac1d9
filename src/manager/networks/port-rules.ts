/**
 * A security group as one port gets it: peers named by group become the addresses of that
 * group's NICs. A rule whose group has no NIC allows nothing, so it is left out (an absent
 * peer list would mean "anyone"). Pure.
 */
import type { PortRules, SecurityGroup } from '../../wire/network.ts';

export function portRules(group: SecurityGroup, members: ReadonlyMap<string, readonly string[]>): PortRules {
  const rules: PortRules['rules'] = [];
  for (const r of group.rules) {
    let peers: string[] | undefined;
    if (r.peer && 'cidr' in r.peer) peers = [r.peer.cidr];
    if (r.peer && 'group' in r.peer) {
      peers = [...new Set(members.get(r.peer.group) ?? [])].sort().map((ip) => `${ip}/32`);
      if (!peers.length) continue;
    }
    rules.push({
      direction: r.direction,
      protocol: r.protocol,
      ...(r.ports ? { ports: r.ports } : {}),
      ...(peers ? { peers } : {}),
    });
  }
  return { inbound: group.inbound, outbound: group.outbound, rules };
}
