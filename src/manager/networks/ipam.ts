/**
 * IP address management for one IPv4 subnet: which addresses a NIC may have, and the next free
 * one. Pure: the caller gives the addresses in use (the inventory's), and the database's unique
 * constraint on (network, address) is the last guard against a race between two allocations.
 */
import { TernError } from '../../errors.ts';

/** An IPv4 address as a number (0 .. 2^32-1). */
export function ipToInt(ip: string): number {
  const parts = ip.split('.');
  if (parts.length !== 4) throw new TernError('invalid_request', `${ip} is no IPv4 address`);
  let n = 0;
  for (const p of parts) {
    const b = /^(0|[1-9][0-9]{0,2})$/.test(p) ? Number(p) : Number.NaN;
    if (!(b >= 0 && b <= 255)) throw new TernError('invalid_request', `${ip} is no IPv4 address`);
    n = n * 256 + b;
  }
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Subnet {
  /** The network address, as a number. */
  base: number;
  prefix: number;
  /** How many addresses the prefix spans, network and broadcast included. */
  size: number;
  cidr: string;
}

/** `10.1.0.0/24` → the subnet; host bits set (10.1.0.7/24) are refused, they hide a typo. */
export function parseSubnet(cidr: string): Subnet {
  const [ip, len, extra] = cidr.split('/');
  const prefix = len !== undefined && /^[0-9]{1,2}$/.test(len) ? Number(len) : Number.NaN;
  if (extra !== undefined || ip === undefined || !(prefix >= 0 && prefix <= 32))
    throw new TernError('invalid_request', `${cidr} is no IPv4 prefix (address/length)`, { field: 'subnet' });
  const size = 2 ** (32 - prefix);
  const addr = ipToInt(ip);
  const base = addr - (addr % size);
  if (base !== addr)
    throw new TernError(
      'invalid_request',
      `${cidr} has host bits set: the network is ${intToIp(base)}/${prefix}`,
      {
        field: 'subnet',
      },
    );
  // A /31 or /32 has no room for a gateway and a NIC; a /8 is more than one bridge should hold.
  if (prefix < 8 || prefix > 30)
    throw new TernError('invalid_request', `a network's subnet is a /8 to a /30, not a /${prefix}`, {
      field: 'subnet',
    });
  return { base, prefix, size, cidr: `${intToIp(base)}/${prefix}` };
}

export const contains = (s: Subnet, ip: number): boolean => ip >= s.base && ip < s.base + s.size;

/** The addresses a host may have: not the network address nor the broadcast one. */
export const isHostAddress = (s: Subnet, ip: number): boolean => ip > s.base && ip < s.base + s.size - 1;

/** The first host address: the usual gateway. */
export const firstHost = (s: Subnet): string => intToIp(s.base + 1);

/** What IPAM needs to know of a network. */
export interface AddressPlan {
  subnet: string;
  gateway: string | null;
  /** dnsmasq's dynamic pool, for clients Tern does not know: NICs are not given addresses from it. */
  dhcp: { start: string; end: string } | null;
}

/** Checks a network's addresses against its subnet: gateway and DHCP range inside it, in order. */
export function checkAddressPlan(p: AddressPlan): Subnet {
  const s = parseSubnet(p.subnet);
  if (p.gateway !== null && !isHostAddress(s, ipToInt(p.gateway)))
    throw new TernError('invalid_request', `the gateway ${p.gateway} is no host address of ${s.cidr}`, {
      field: 'gateway',
    });
  if (p.dhcp) {
    const start = ipToInt(p.dhcp.start);
    const end = ipToInt(p.dhcp.end);
    if (!isHostAddress(s, start) || !isHostAddress(s, end) || start > end)
      throw new TernError(
        'invalid_request',
        `the DHCP range ${p.dhcp.start}-${p.dhcp.end} is not an ordered range of host addresses of ${s.cidr}`,
        { field: 'dhcp' },
      );
    if (p.gateway !== null && ipToInt(p.gateway) >= start && ipToInt(p.gateway) <= end)
      throw new TernError('invalid_request', `the gateway ${p.gateway} lies in the DHCP range`, {
        field: 'dhcp',
      });
  }
  return s;
}

/**
 * The address a NIC asked for, checked: a host address of the subnet, not the gateway, not in
 * use. Inside the DHCP range is allowed: a fixed lease keeps dnsmasq from giving it to another.
 */
export function checkRequested(p: AddressPlan, ip: string, used: ReadonlySet<string>): string {
  const s = parseSubnet(p.subnet);
  const n = ipToInt(ip);
  const canonical = intToIp(n);
  if (!contains(s, n))
    throw new TernError('invalid_request', `${canonical} is not in the network's subnet ${s.cidr}`, {
      field: 'ip',
    });
  if (!isHostAddress(s, n))
    throw new TernError('invalid_request', `${canonical} is the network or broadcast address of ${s.cidr}`, {
      field: 'ip',
    });
  if (canonical === p.gateway)
    throw new TernError('invalid_request', `${canonical} is the network's gateway`, { field: 'ip' });
  if (used.has(canonical))
    throw new TernError('conflict', `${canonical} is in use by another NIC of the network`, { field: 'ip' });
  return canonical;
}

/**
 * The lowest free host address of the subnet, skipping the gateway and the DHCP range; a
 * conflict error when none is left (so a full network says so, instead of sharing an address).
 */
export function nextFree(p: AddressPlan, used: ReadonlySet<string>): string {
  const s = parseSubnet(p.subnet);
  const gateway = p.gateway === null ? -1 : ipToInt(p.gateway);
  const start = p.dhcp ? ipToInt(p.dhcp.start) : -1;
  const end = p.dhcp ? ipToInt(p.dhcp.end) : -2;
  for (let n = s.base + 1; n < s.base + s.size - 1; n++) {
    if (n === gateway) continue;
    if (n >= start && n <= end) {
      n = end;
      continue;
    }
    const ip = intToIp(n);
    if (!used.has(ip)) return ip;
  }
  throw new TernError('conflict', `no address is left in ${s.cidr} outside its DHCP range`, {
    field: 'ip',
    inUse: used.size,
  });
}
