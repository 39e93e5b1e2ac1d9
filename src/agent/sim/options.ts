/** What a simulated host is made of: its CPU, memory, pools and the pace of its guests and links. */
import type { Logger } from '../../log.ts';
import type { Pools } from '../storage/pools.ts';
import type { SimClock } from './clock.ts';

export interface SimCpu {
  vendor: string;
  model: string;
  flags: string[];
}

export const defaultSimCpu: SimCpu = {
  vendor: 'GenuineIntel',
  model: 'Intel Xeon Processor (simulated)',
  flags:
    'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc nopl pni pclmulqdq vmx ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap xsaveopt arat'.split(
      ' ',
    ),
};

export interface SimDriverOptions {
  hostname: string;
  /** Pool name → directory; volumes are real files there (the agent's storage module). */
  pools: Pools;
  sharedPools?: string[];
  cores?: number;
  memoryMiB?: number;
  cpu?: SimCpu;
  /** Size each pool reports (bytes), one figure for all or per pool; 1 TiB by default. */
  poolTotalBytes?: number | Record<string, number>;
  /** Whether the host has UEFI firmware for VMs (true by default). */
  uefi?: boolean;
  /** From start until the guest agent answers (simulated ms). */
  bootDelayMs?: number;
  /** From an ACPI or guest-agent shutdown request until the guest is off (simulated ms). */
  shutdownDelayMs?: number;
  /** Guest agent heartbeat period (simulated ms); 0 turns heartbeats off (large simulations). */
  guestHeartbeatMs?: number;
  /** The host's migration network (MiB/s). */
  networkMiBps?: number;
  /** Local disk throughput for state files and disk moves (MiB/s). */
  diskMiBps?: number;
  /** Memory a new VM dirties per second while it runs; `setDirtyRate` changes it per VM. */
  dirtyMiBps?: number;
  clock?: SimClock;
  log?: Logger;
}

/** The options with their defaults filled in. */
export type SimSettings = Required<
  Omit<SimDriverOptions, 'log' | 'clock' | 'poolTotalBytes' | 'sharedPools'>
> & {
  sharedPools: string[];
};

export function simSettings(opts: SimDriverOptions): SimSettings {
  const bootDelayMs = opts.bootDelayMs ?? 200;
  return {
    hostname: opts.hostname,
    pools: opts.pools,
    sharedPools: opts.sharedPools ?? [],
    cores: opts.cores ?? 32,
    memoryMiB: opts.memoryMiB ?? 256 * 1024,
    cpu: opts.cpu ?? defaultSimCpu,
    uefi: opts.uefi ?? true,
    bootDelayMs,
    shutdownDelayMs: opts.shutdownDelayMs ?? Math.max(1, bootDelayMs / 2),
    guestHeartbeatMs: opts.guestHeartbeatMs ?? 10_000,
    networkMiBps: opts.networkMiBps ?? 1180,
    diskMiBps: opts.diskMiBps ?? 1000,
    dirtyMiBps: opts.dirtyMiBps ?? 20,
  };
}

/** The size each pool reports (bytes). */
export function poolTotals(opts: SimDriverOptions): Record<string, number> {
  const total = opts.poolTotalBytes ?? 1024 ** 4;
  return Object.fromEntries(
    Object.keys(opts.pools).map((name) => [
      name,
      typeof total === 'number' ? total : (total[name] ?? 1024 ** 4),
    ]),
  );
}
