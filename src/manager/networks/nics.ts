/**
 * NICs as asked for, made whole from the inventory: a MAC for every NIC (the one asked for,
 * checked, or a free one under Tern's prefix), and for a NIC on a managed network its bridge,
 * its address (asked for and checked, or the next free one), its port's rules, and the static
 * address cloud-init gives the guest, the same that DHCP leases to its MAC.
 */
import { TernError } from '../../errors.ts';
import type { NicRequest, NicSpec } from '../../wire/vm.ts';
import type { NicTable } from '../db/schema.ts';
import { parseSubnet } from './ipam.ts';
import { portRules } from './port-rules.ts';
import { groupToWire, type SecurityGroupStore } from './security-groups.ts';
import type { NetworkStore } from './store.ts';

/** The managed networks a VM's NICs are on (ids): placement takes only hosts that have them all. */
export function networksOf(spec: { nics: readonly NicSpec[] }): string[] {
  return [...new Set(spec.nics.flatMap((n) => (n.network.mode === 'network' ? [n.network.network] : [])))];
}

/** A static address for cloud-init's network-config: CIDR form, the route and the resolvers. */
export interface StaticAddress {
  address: string;
  gateway?: string;
  dns?: string[];
}

/** One NIC decided: what the host gets, what the inventory records, what the guest is told. */
export interface PlannedNic {
  spec: NicSpec;
  row: Omit<NicTable, 'vmId' | 'createdAt'>;
  address: StaticAddress | null;
}

export interface NicDeps {
  networks: NetworkStore;
  securityGroups: SecurityGroupStore;
}

/**
 * `taken` holds what other NICs being planned with these hold already (MACs and addresses),
 * so one VM's NICs never share either. What is given stays reserved until the caller releases
 * it (`networks.release`), once its NICs are recorded or dropped.
 */
export async function planNics(
  d: NicDeps,
  requests: readonly NicRequest[],
  taken: { macs: Set<string>; ips: Set<string> } = { macs: new Set(), ips: new Set() },
): Promise<PlannedNic[]> {
  const out: PlannedNic[] = [];
  try {
    await planEach(d, requests, taken, out);
  } catch (err) {
    // The NIC that failed may have had its MAC already.
    const macs = [...taken.macs].map((mac) => ({ mac, networkId: null, ip: null }));
    d.networks.release([...out.map((n) => n.row), ...macs]);
    throw err;
  }
  return out;
}

async function planEach(
  d: NicDeps,
  requests: readonly NicRequest[],
  taken: { macs: Set<string>; ips: Set<string> },
  out: PlannedNic[],
): Promise<void> {
  for (const [i, req] of requests.entries()) {
    const field = `nics/${i}`;
    const asked = req.mode === 'network' ? req.mac : undefined;
    const mac = await (asked
      ? d.networks.requestedMac(asked, taken.macs)
      : d.networks.freeMac(taken.macs)
    ).catch((err: TernError) => {
      throw new TernError(err.code, `NIC ${i}: ${err.message}`, { ...err.details, field });
    });
    taken.macs.add(mac);
    if (req.mode !== 'network') {
      out.push({
        spec: { mac, network: req },
        row: { mac, networkId: null, ip: null, securityGroup: null },
        address: null,
      });
      continue;
    }
    const network = await d.networks.row(req.network);
    const ip = await d.networks.address(network, req.ip, taken.ips).catch((err: TernError) => {
      throw new TernError(err.code, `NIC ${i} on ${network.name}: ${err.message}`, { ...err.details, field });
    });
    taken.ips.add(ip);
    const group = req.group ? await d.securityGroups.row(req.group) : null;
    const rules = group ? portRules(groupToWire(group), await d.securityGroups.members()) : null;
    const dns = JSON.parse(network.dns) as string[];
    const resolvers = dns.length ? dns : network.gateway ? [network.gateway] : [];
    out.push({
      spec: { mac, network: { mode: 'network', network: network.id, bridge: network.bridge, ip, rules } },
      row: { mac, networkId: network.id, ip, securityGroup: group?.id ?? null },
      address: {
        address: `${ip}/${parseSubnet(network.subnet).prefix}`,
        // An isolated network's gateway serves DHCP and DNS only: no default route through it.
        ...(network.gateway && network.type !== 'isolated' ? { gateway: network.gateway } : {}),
        ...(resolvers.length ? { dns: resolvers } : {}),
      },
    });
  }
}
