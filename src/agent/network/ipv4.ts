/** IPv4 arithmetic for a host's networks: pure, no I/O. */

/** The address as a 32-bit unsigned number. */
export function ipToNumber(ip: string): number {
  return ip.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

export function numberToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

export interface Prefix {
  /** The network's own address (host bits zero). */
  network: string;
  length: number;
  netmask: string;
}

export function parseCidr(cidr: string): Prefix {
  const [ip, len] = cidr.split('/');
  const length = Number(len);
  const size = 2 ** (32 - length);
  const network = Math.floor(ipToNumber(ip) / size) * size;
  return { network: numberToIp(network), length, netmask: numberToIp(2 ** 32 - size) };
}

export function inSubnet(ip: string, cidr: string): boolean {
  const p = parseCidr(cidr);
  return parseCidr(`${ip}/${p.length}`).network === p.network;
}
