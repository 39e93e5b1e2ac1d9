/** What a QEMU host is, as its facts tell the manager: CPU, memory, pools, versions, firmware, networks. */
import { execFile } from 'node:child_process';
import os from 'node:os';
import { promisify } from 'node:util';
import type { HostFacts } from '../../wire/host.ts';
import { ovmfPresent } from '../firmware.ts';
import type { KernelNetworks } from '../network/kernel-networks.ts';
import type { Pools } from '../storage/pools.ts';
import { poolUsage } from '../storage/volumes.ts';
import { type AcceleratorChoice, readCpuFacts } from './accelerator.ts';

const run = promisify(execFile);

export async function hostFacts(h: {
  binary: string;
  accelerator: AcceleratorChoice;
  pools: Pools;
  sharedPools: readonly string[];
  networks: KernelNetworks;
}): Promise<HostFacts> {
  const cpu = readCpuFacts();
  let qemuVersion = 'missing';
  try {
    qemuVersion = (await run(h.binary, ['--version'])).stdout
      .split('\n')[0]!
      .replace(/^QEMU emulator version /, '');
  } catch {
    // Reported as missing; `tern doctor` explains how to install it.
  }
  return {
    hostname: os.hostname(),
    driver: 'qemu',
    accelerator: h.accelerator.accelerator,
    acceleratorReason: h.accelerator.reason,
    cpuModel: cpu.model,
    cpuVendor: cpu.vendor,
    cpuFlags: cpu.flags.slice(0, 1024),
    cores: cpu.cores,
    memoryMiB: Math.floor(os.totalmem() / 1024 / 1024),
    pools: await Promise.all(
      Object.entries(h.pools).map(async ([name, dir]) => ({
        name,
        path: dir,
        shared: h.sharedPools.includes(name),
        ...(await poolUsage(dir)),
      })),
    ),
    versions: { qemu: qemuVersion, node: process.versions.node },
    uefi: ovmfPresent(),
    network: await h.networks.capabilities(),
  };
}
