/** What a simulated host says it is: the CPU, memory and pools it was given, their use so far. */
import type { HostFacts } from '../../wire/host.ts';
import type { RecordedNetworks } from '../network/recorded-networks.ts';
import type { PoolUsage } from './disks.ts';
import type { SimSettings } from './options.ts';

export async function simFacts(h: {
  hostname: string;
  o: SimSettings;
  totals: Record<string, number>;
  usage: PoolUsage;
  networks: RecordedNetworks;
}): Promise<HostFacts> {
  const { o } = h;
  return {
    hostname: h.hostname,
    driver: 'sim',
    accelerator: 'sim',
    acceleratorReason: 'simulated host: VMs are modelled, not run',
    cpuModel: o.cpu.model,
    cpuVendor: o.cpu.vendor,
    cpuFlags: o.cpu.flags.slice(0, 1024),
    cores: o.cores,
    memoryMiB: o.memoryMiB,
    pools: Object.entries(o.pools).map(([name, dir]) => {
      const totalBytes = h.totals[name]!;
      return {
        name,
        path: dir,
        shared: o.sharedPools.includes(name),
        totalBytes,
        freeBytes: Math.max(0, totalBytes - h.usage.used(dir)),
      };
    }),
    versions: { sim: '1', node: process.versions.node },
    uefi: o.uefi,
    network: await h.networks.capabilities(),
  };
}
