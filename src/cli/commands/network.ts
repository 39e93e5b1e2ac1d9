/** `tern network …`: managed networks (bridge, nat, isolated, overlay) and where hosts stand on them. */
import { TernError } from '../../errors.ts';
import { networkRoutes } from '../../wire/api/networks.ts';
import { type CreateNetworkRequest, type Network, NetworkType } from '../../wire/network.ts';
import { deleteEach } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
import { printList, printObject } from '../output.ts';
import { type Command, type FlagUse, viaGroup } from '../registry.ts';

const types = wordsOf(NetworkType);

const usage = `usage: tern network list | show NAME | hosts NAME | delete NAME...
       tern network create NAME --type ${types.join('|')} --subnet CIDR [--gateway IP|none]
                 [--dhcp START-END] [--dns IP]... [--domain D] [--uplink IF] [--vlan ID] [--vni N] [--mtu N]`;

const whole = (v: string | undefined) => (v === undefined ? undefined : Number(v));

/** The create request the flags ask for. */
export function networkBody(name: string, flags: Flags): CreateNetworkRequest {
  if (!flags.type || !flags.subnet)
    throw new TernError('invalid_request', `a network needs --type and --subnet\n${usage}`);
  const body: CreateNetworkRequest = {
    name,
    type: oneOf(flags.type, types, '--type'),
    subnet: flags.subnet,
  };
  if (flags.gateway !== undefined) body.gateway = flags.gateway === 'none' ? null : flags.gateway;
  if (flags.dhcp !== undefined) {
    const [start, end, extra] = flags.dhcp.split('-');
    if (!start || !end || extra !== undefined)
      throw new TernError('invalid_request', '--dhcp is START-END, e.g. 10.1.0.100-10.1.0.199');
    body.dhcp = { start, end };
  }
  if (flags.dns.length) body.dns = flags.dns;
  if (flags.domain) body.domain = flags.domain;
  if (flags.uplink) body.uplink = flags.uplink;
  const vlan = whole(flags.vlan);
  if (vlan !== undefined) body.vlan = vlan;
  const vni = whole(flags.vni);
  if (vni !== undefined) body.vni = vni;
  const mtu = whole(flags.mtu);
  if (mtu !== undefined) body.mtu = mtu;
  return body;
}

function showNetwork(network: Network, flags: Flags): void {
  printObject(flags.output, network, (n) => [
    ['name', n.name],
    ['id', n.id],
    ['type', n.type],
    ['subnet', n.subnet],
    ['gateway', n.gateway],
    ['DNS', n.dns.join(', ') || (n.gateway ? `${n.gateway} (the gateway)` : null)],
    ['DHCP range', n.dhcp ? `${n.dhcp.start}-${n.dhcp.end}` : 'none (fixed leases only)'],
    ['domain', n.domain],
    ['uplink', n.uplink],
    ['VLAN', n.vlan],
    ['VNI', n.vni],
    ['MTU', n.mtu],
    ['bridge', n.bridge],
    ['NICs', n.nics],
    ['created', n.createdAt],
  ]);
}

export async function networkCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const name = args[0] ?? '';
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const { items } = await api.call(networkRoutes.list);
    return printList(
      flags.output,
      items,
      ['NAME', 'TYPE', 'SUBNET', 'GATEWAY', 'DHCP', 'BRIDGE', 'NICS'],
      (n) => [
        n.name,
        n.type + (n.vni !== null ? ` (vni ${n.vni})` : n.vlan !== null ? ` (vlan ${n.vlan})` : ''),
        n.subnet,
        n.gateway ?? '-',
        n.dhcp ? `${n.dhcp.start}-${n.dhcp.end}` : '-',
        n.bridge,
        n.nics,
      ],
    );
  }
  if (sub === 'show' && args.length === 1)
    return showNetwork(await api.call(networkRoutes.show, { params: { network: name } }), flags);
  if (sub === 'hosts' && args.length === 1) {
    const { items } = await api.call(networkRoutes.hosts, { params: { network: name } });
    return printList(flags.output, items, ['HOST', 'STATE', 'DHCP', 'PORTS', 'REASON'], (h) => [
      h.host,
      h.state?.state ?? 'unknown',
      h.state?.dhcp,
      h.state?.ports,
      h.state?.reason,
    ]);
  }
  if (sub === 'create' && args.length === 1)
    return showNetwork(await api.call(networkRoutes.create, { body: networkBody(name, flags) }), flags);
  if (sub === 'delete' && args.length > 0)
    return deleteEach(args, 'usage: tern network delete NAME...', 'network', flags.output, (network) =>
      api.call(networkRoutes.remove, { params: { network } }),
    );
  throw new TernError('invalid_request', usage);
}

const network = viaGroup(networkCommand);
const createFlags: FlagUse[] = [
  'type',
  'subnet',
  ['gateway', "the hosts' address on it (default: the first address; bridge: none); none: no gateway"],
  'dhcp',
  ['dns', 'a resolver handed to guests (repeatable; default: the gateway)'],
  'domain',
  'uplink',
  'vlan',
  'vni',
  'mtu',
];

export const networkCommands: Command[] = [
  { path: 'network list', summary: 'managed networks', groupDefault: true, run: network },
  { path: 'network show', args: 'NAME', summary: 'one network', run: network },
  { path: 'network hosts', args: 'NAME', summary: 'what each host made of a network', run: network },
  {
    path: 'network create',
    args: 'NAME',
    summary: 'a network every host is given',
    details:
      'bridge: a Linux bridge on each host, optionally with an uplink; nat: a bridge masqueraded out of the host; isolated: no uplink, no route anywhere; overlay: one layer-2 segment across hosts over VXLAN.',
    flags: createFlags,
    run: network,
  },
  { path: 'network delete', args: 'NAME...', summary: 'delete networks no NIC uses', run: network },
];
