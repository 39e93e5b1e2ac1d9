/**
 * A network as asked for, made whole: the defaults each type takes, what each type refuses,
 * and the names and numbers the manager decides (bridge name, VNI, the gateway's MAC). Pure.
 */
import { TernError } from '../../errors.ts';
import type { CreateNetworkRequest } from '../../wire/network.ts';
import type { NetworkTable } from '../db/schema.ts';
import { checkAddressPlan, firstHost } from './ipam.ts';

/** `tn` and the first 8 hex digits of the network's id: short enough for the kernel's 15. */
export const bridgeNameOf = (id: string): string => `tn${id.replaceAll('-', '').slice(0, 8)}`;

/** VXLAN's 50 bytes of headers come out of a 1500-byte path. */
const overlayMtu = 1450;
/** Overlay VNIs Tern picks start here, clear of small numbers people pick by hand. */
const firstVni = 10000;

/** The lowest VNI from 10000 on that no network uses. */
export function nextVni(used: ReadonlySet<number>): number {
  for (let v = firstVni; v <= 16777215; v++) if (!used.has(v)) return v;
  throw new TernError('conflict', 'every VXLAN network identifier is in use');
}

export interface NetworkChoices {
  id: string;
  gatewayMac: string;
  vnisInUse: ReadonlySet<number>;
  now: string;
}

const refuse = (field: string, message: string) => new TernError('invalid_request', message, { field });

export function planNetwork(req: CreateNetworkRequest, c: NetworkChoices): NetworkTable {
  const t = req.type;
  if (req.uplink !== undefined && t !== 'bridge')
    throw refuse('uplink', `a ${t} network has no uplink: only a bridge network enslaves a host interface`);
  if (req.vni !== undefined && t !== 'overlay') throw refuse('vni', `only an overlay network has a VNI`);
  if (req.vlan !== undefined && t !== 'bridge')
    throw refuse('vlan', `a VLAN tag is for a bridge network's uplink, not a ${t} network`);
  if (req.vlan !== undefined && req.uplink === undefined)
    throw refuse('vlan', 'a VLAN tag needs an uplink to tag on');
  if (req.vni !== undefined && c.vnisInUse.has(req.vni))
    throw new TernError('conflict', `VNI ${req.vni} is used by another network`, { field: 'vni' });
  // A bridge network may be a plain switch with the hosts out of it; every other type has the
  // hosts on it (nat routes through it; isolated and overlay serve DHCP and DNS from it).
  const fallback = t === 'bridge' ? null : firstHostOf(req.subnet);
  const gateway = req.gateway === undefined ? fallback : req.gateway;
  if (gateway === null && t === 'nat')
    throw refuse('gateway', 'a nat network routes through its gateway: it needs one');
  const dhcp = req.dhcp ?? null;
  if ((dhcp || req.dns?.length || req.domain) && gateway === null && t !== 'bridge')
    throw refuse('gateway', 'DHCP and DNS are served from the gateway address: give one');
  const subnet = checkAddressPlan({ subnet: req.subnet, gateway, dhcp }).cidr;
  return {
    id: c.id,
    name: req.name,
    type: t,
    subnet,
    gateway,
    gatewayMac: c.gatewayMac,
    dns: JSON.stringify(req.dns ?? []),
    dhcpStart: dhcp?.start ?? null,
    dhcpEnd: dhcp?.end ?? null,
    domain: req.domain ?? null,
    uplink: req.uplink ?? null,
    vlan: req.vlan ?? null,
    vni: t === 'overlay' ? (req.vni ?? nextVni(c.vnisInUse)) : null,
    mtu: req.mtu ?? (t === 'overlay' ? overlayMtu : 1500),
    bridge: bridgeNameOf(c.id),
    createdAt: c.now,
  };
}

function firstHostOf(subnet: string): string {
  return firstHost(checkAddressPlan({ subnet, gateway: null, dhcp: null }));
}
