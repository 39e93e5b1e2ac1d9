/**
 * MAC addresses for NICs, cluster-wide. Tern's own locally administered prefix 02:74:6e ("tn"):
 * QEMU's 52:54:00 is what every hand-made VM on any host uses, so addresses from it could meet
 * a stranger's on a bridged network. Pure: the caller gives the MACs in use; the database's
 * primary key on the MAC is the last guard against two allocations racing.
 */
import { TernError } from '../../errors.ts';

export const nicMacPrefix = '02:74:6e';

/** Every network's gateway (its bridge on every host) has its own prefix, so it never meets a NIC's. */
export const gatewayMacPrefix = '06:74:6e';

const hex = (b: number) => b.toString(16).padStart(2, '0');

/** A MAC from the prefix and three random bytes, or the next free one after them. */
export function allocateMac(
  used: ReadonlySet<string>,
  random: (n: number) => Buffer,
  prefix: string = nicMacPrefix,
): string {
  const [a = 0, b = 0, c = 0] = random(3);
  const start = (a << 16) | (b << 8) | c;
  // Random spreads clones of one template apart; the walk makes a nearly full space still work.
  for (let i = 0; i < 0x1000000; i++) {
    const n = (start + i) % 0x1000000;
    const mac = `${prefix}:${hex(n >> 16)}:${hex((n >> 8) & 255)}:${hex(n & 255)}`;
    if (!used.has(mac)) return mac;
  }
  throw new TernError('conflict', `every MAC address under ${prefix} is in use`);
}

/** A MAC someone asked for: lower case, unicast, not in use. */
export function checkRequestedMac(mac: string, used: ReadonlySet<string>): string {
  const m = mac.toLowerCase();
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(m))
    throw new TernError('invalid_request', `${mac} is no MAC address (six hex pairs with colons)`, {
      field: 'mac',
    });
  if (Number.parseInt(m.slice(0, 2), 16) & 1)
    throw new TernError('invalid_request', `${m} is a multicast address; a NIC needs a unicast one`, {
      field: 'mac',
    });
  if (m.startsWith(gatewayMacPrefix))
    throw new TernError(
      'invalid_request',
      `${m} is under ${gatewayMacPrefix}, which Tern keeps for gateways`,
      {
        field: 'mac',
      },
    );
  if (used.has(m)) throw new TernError('conflict', `MAC ${m} is in use by another NIC`, { field: 'mac' });
  return m;
}
