/**
 * Virtual networks: the objects the API shows, and what a host needs to realize one.
 *
 * The manager owns every decision (addresses, MACs, bridge names, peers, leases); a host realizes
 * what it is given, idempotently, and keeps the last spec so it can reconcile at start. A network
 * is one bridge per host; `overlay` joins the hosts' bridges over VXLAN with a gateway address
 * that every host answers for its own VMs (an anycast gateway), so DHCP, DNS and the gateway
 * never cross the tunnel.
 */
import { type Static, Type } from 'typebox';
import { Mac, Name, Timestamp, Uuid } from './common.ts';

export const NetworkType = Type.Union(
  [Type.Literal('bridge'), Type.Literal('nat'), Type.Literal('isolated'), Type.Literal('overlay')],
  {
    description:
      'bridge: a Linux bridge on each host, optionally with an uplink; nat: a bridge masqueraded out of the host; isolated: no uplink and no route anywhere; overlay: one layer-2 segment across hosts over VXLAN',
  },
);
export type NetworkType = Static<typeof NetworkType>;

export const Ipv4 = Type.String({
  pattern:
    '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$',
  description: 'an IPv4 address, dotted quad',
});

export const Ipv4Cidr = Type.String({
  pattern:
    '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/([0-9]|[12][0-9]|3[0-2])$',
  description: 'an IPv4 prefix, address/length',
});

/** The DNS domain of a network's names (it goes into dnsmasq's configuration: no spaces, no newlines). */
export const DomainName = Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$' });

/** A host interface name as the kernel takes it: at most 15 characters, no slash or space. */
export const IfName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,15}$' });

export const DhcpRange = Type.Object(
  { start: Ipv4, end: Ipv4 },
  { additionalProperties: false, description: 'the addresses handed out to NICs without a fixed one' },
);
export type DhcpRange = Static<typeof DhcpRange>;

/** Which way a rule's traffic goes, seen from the NIC. */
export const Direction = Type.Union([Type.Literal('in'), Type.Literal('out')]);
export const Protocol = Type.Union([
  Type.Literal('tcp'),
  Type.Literal('udp'),
  Type.Literal('icmp'),
  Type.Literal('any'),
]);
/** What happens to traffic no rule allows. */
export const Verdict = Type.Union([Type.Literal('allow'), Type.Literal('deny')]);
export const Ports = Type.Object(
  {
    from: Type.Integer({ minimum: 1, maximum: 65535 }),
    to: Type.Integer({ minimum: 1, maximum: 65535 }),
  },
  { additionalProperties: false, description: 'tcp and udp only' },
);

/** One allow rule of a security group; what no rule allows is dropped where the group says deny. */
export const SecurityRule = Type.Object(
  {
    direction: Direction,
    protocol: Protocol,
    ports: Type.Optional(Ports),
    /** The other end: an address range, or the NICs of a group (resolved to addresses for hosts). */
    peer: Type.Optional(
      Type.Union([
        Type.Object({ cidr: Ipv4Cidr }, { additionalProperties: false }),
        Type.Object({ group: Name }, { additionalProperties: false }),
      ]),
    ),
  },
  { additionalProperties: false },
);
export type SecurityRule = Static<typeof SecurityRule>;

export const SecurityGroup = Type.Object({
  id: Uuid,
  name: Name,
  inbound: Type.Union(Verdict.anyOf, {
    description: 'what happens to inbound traffic no rule allows',
  }),
  outbound: Type.Union(Verdict.anyOf, {
    description: 'what happens to outbound traffic no rule allows',
  }),
  rules: Type.Array(SecurityRule, { maxItems: 256 }),
  createdAt: Timestamp,
});
export type SecurityGroup = Static<typeof SecurityGroup>;

/** A network as the API shows it. */
export const Network = Type.Object({
  id: Uuid,
  name: Name,
  type: NetworkType,
  subnet: Ipv4Cidr,
  gateway: Type.Union([Ipv4, Type.Null()], {
    description:
      "the hosts' address on the network: the router for bridge and nat, DHCP and DNS only for isolated",
  }),
  dns: Type.Array(Ipv4, { maxItems: 4, description: 'resolvers handed to guests; the gateway when empty' }),
  dhcp: Type.Union([DhcpRange, Type.Null()]),
  domain: Type.Union([DomainName, Type.Null()]),
  uplink: Type.Union([IfName, Type.Null()], {
    description: 'bridge only: the host interface enslaved to it',
  }),
  vlan: Type.Union([Type.Integer({ minimum: 1, maximum: 4094 }), Type.Null()]),
  vni: Type.Union([Type.Integer({ minimum: 1, maximum: 16777215 }), Type.Null()], {
    description: 'overlay only',
  }),
  mtu: Type.Integer({ minimum: 576, maximum: 9000 }),
  bridge: IfName,
  nics: Type.Integer({ description: 'NICs attached to it' }),
  createdAt: Timestamp,
});
export type Network = Static<typeof Network>;

/** A fixed address lease: the NIC with this MAC always gets this address, under this name. */
export const Lease = Type.Object({ mac: Mac, ip: Ipv4, hostname: Name }, { additionalProperties: false });
export type Lease = Static<typeof Lease>;

/** What a host realizes for one network (agent: PUT /agent/v1/networks/:id). */
export const HostNetworkSpec = Type.Object(
  {
    id: Uuid,
    name: Name,
    type: NetworkType,
    bridge: IfName,
    subnet: Ipv4Cidr,
    gateway: Type.Union([Ipv4, Type.Null()]),
    /** The bridge's MAC: the same on every host, so an overlay's gateway is one neighbour. */
    gatewayMac: Mac,
    dns: Type.Array(Ipv4, { maxItems: 4 }),
    dhcp: Type.Union([DhcpRange, Type.Null()]),
    domain: Type.Union([DomainName, Type.Null()]),
    uplink: Type.Union([IfName, Type.Null()]),
    vlan: Type.Union([Type.Integer({ minimum: 1, maximum: 4094 }), Type.Null()]),
    mtu: Type.Integer({ minimum: 576, maximum: 9000 }),
    overlay: Type.Union([
      Type.Object(
        {
          vni: Type.Integer({ minimum: 1, maximum: 16777215 }),
          local: Ipv4,
          peers: Type.Array(Ipv4, { maxItems: 10000 }),
          port: Type.Integer({ minimum: 1, maximum: 65535 }),
        },
        { additionalProperties: false },
      ),
      Type.Null(),
    ]),
    /** Every NIC of the network, on every host: DHCP serves the local ones, DNS names them all. */
    leases: Type.Array(Lease, { maxItems: 65536 }),
  },
  { additionalProperties: false },
);
export type HostNetworkSpec = Static<typeof HostNetworkSpec>;

/** A security group as a host applies it to a port: group peers already resolved to addresses. */
export const PortRules = Type.Object(
  {
    inbound: Verdict,
    outbound: Verdict,
    rules: Type.Array(
      Type.Object(
        {
          direction: Direction,
          protocol: Protocol,
          ports: Type.Optional(Ports),
          peers: Type.Optional(Type.Array(Ipv4Cidr, { maxItems: 4096 })),
        },
        { additionalProperties: false },
      ),
      { maxItems: 4096 },
    ),
  },
  { additionalProperties: false },
);
export type PortRules = Static<typeof PortRules>;

/** What the host made of a network: realized, or why not. */
export const HostNetworkState = Type.Object({
  id: Uuid,
  name: Name,
  bridge: IfName,
  state: Type.Union([Type.Literal('ready'), Type.Literal('failed')]),
  reason: Type.Union([Type.String({ maxLength: 2000 }), Type.Null()]),
  dhcp: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('none')]),
  ports: Type.Integer({ description: "VM NICs plugged into the network's bridge on this host" }),
});
export type HostNetworkState = Static<typeof HostNetworkState>;

/** What the host's kernel can do for networks (part of its facts; `tern doctor` shows it). */
export const NetworkCapabilities = Type.Object({
  vlan: Type.Boolean({ description: '802.1Q devices and bridge VLAN filtering' }),
  vxlan: Type.Boolean(),
  nftables: Type.Boolean(),
  dnsmasq: Type.Boolean(),
  reasons: Type.Array(Type.String({ maxLength: 500 }), { maxItems: 16 }),
});
export type NetworkCapabilities = Static<typeof NetworkCapabilities>;

/** What `network create` takes; the manager fills in the rest (bridge name, VNI, gateway MAC). */
export const CreateNetworkRequest = Type.Object(
  {
    name: Name,
    type: NetworkType,
    subnet: Ipv4Cidr,
    gateway: Type.Optional(
      Type.Union([Ipv4, Type.Null()], {
        description: "the subnet's first address when absent (bridge: none); null: none",
      }),
    ),
    dns: Type.Optional(Type.Array(Ipv4, { maxItems: 4 })),
    dhcp: Type.Optional(Type.Union([DhcpRange, Type.Null()])),
    domain: Type.Optional(DomainName),
    uplink: Type.Optional(IfName),
    vlan: Type.Optional(Type.Integer({ minimum: 1, maximum: 4094 })),
    vni: Type.Optional(Type.Integer({ minimum: 1, maximum: 16777215 })),
    mtu: Type.Optional(Type.Integer({ minimum: 576, maximum: 9000 })),
  },
  { additionalProperties: false },
);
export type CreateNetworkRequest = Static<typeof CreateNetworkRequest>;

export const CreateSecurityGroupRequest = Type.Object(
  {
    name: Name,
    inbound: Type.Optional(Type.Union(Verdict.anyOf, { default: 'deny' })),
    outbound: Type.Optional(Type.Union(Verdict.anyOf, { default: 'allow' })),
    rules: Type.Optional(Type.Array(SecurityRule, { maxItems: 256 })),
  },
  { additionalProperties: false },
);
export type CreateSecurityGroupRequest = Static<typeof CreateSecurityGroupRequest>;

export const UpdateSecurityGroupRequest = Type.Object(
  {
    inbound: Type.Optional(Verdict),
    outbound: Type.Optional(Verdict),
    rules: Type.Optional(Type.Array(SecurityRule, { maxItems: 256 })),
  },
  { additionalProperties: false },
);
export type UpdateSecurityGroupRequest = Static<typeof UpdateSecurityGroupRequest>;
