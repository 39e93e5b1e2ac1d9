/**
 * The snapshot placement decides over: hosts with what they hold, the demand of one VM, and the
 * policy. Plain data, so the decisions stay pure and a benchmark can build thousands of hosts.
 */
import type { HostState } from '../../wire/host.ts';

/** As the host reports it: `vendor` is /proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD), `flags` its flag names. */
export interface CpuIdentity {
  vendor: string;
  model: string;
  flags: readonly string[];
}

export interface HostPool {
  name: string;
  shared: boolean;
  freeBytes: number;
  /** Size of the pool; when known, storage headroom is rated against it rather than against what is free. */
  sizeBytes?: number;
}

export interface PlacementHost {
  id: string;
  name: string;
  state: HostState;
  cores: number;
  memoryMiB: number;
  cpu: CpuIdentity;
  pools: readonly HostPool[];
  /** What the VMs on the host take: those that run (or may), and starts admitted there. */
  allocated: { vcpus: number; memoryMiB: number };
  /** Affinity groups of the VMs on this host, with how many members each. */
  groups: ReadonlyMap<string, number>;
  /** The host has UEFI firmware (OVMF) for VMs. */
  uefi?: boolean;
  /**
   * Every managed network of the inventory, by id, and whether the host has realized it (and if
   * not, why). Absent: nothing is known of the host's networks (the filter then refuses nothing).
   */
  networks?: ReadonlyMap<string, HostNetwork>;
}

/** A managed network as one host last said of it. */
export interface HostNetwork {
  name: string;
  ready: boolean;
  reason: string | null;
}

export type CpuDemand = { mode: 'compat'; model: string } | { mode: 'host'; sameAs?: CpuIdentity };

export interface VmGroup {
  name: string;
  kind: 'affinity' | 'anti-affinity';
}

export interface VmDemand {
  vcpus: number;
  memoryMiB: number;
  /** New bytes the VM needs in `pools[0]` on the chosen host (0 when its disks exist on shared storage already). */
  diskBytes: number;
  /** Pools the VM's disks are in or will be created in; the host must see each of them. */
  pools: readonly string[];
  cpu: CpuDemand;
  groups: readonly VmGroup[];
  /** The VM boots with UEFI: only hosts with OVMF take it. */
  uefi?: boolean;
  /** Managed networks (ids) its NICs are on: only hosts where each is ready take it. */
  networks?: readonly string[];
  /** Host ids never chosen (a migration's source host). */
  exclude?: readonly string[];
}

export interface PlacementPolicy {
  /** vCPUs per core allowed. */
  cpuOvercommit: number;
  /** Memory allowed per MiB of host memory; 1.0 is no overcommit. */
  memoryOvercommit: number;
  /**
   * Virtual disk bytes one request may add to a pool per byte the pool has free. 1.0: every new
   * or grown disk (a linked clone's overlay too, at the size the guest sees) fits in the free
   * space in full. Disks already there count by what they take now (thin disks grow later, and
   * storage-full protection pauses a VM whose disk cannot).
   */
  storageOvercommit: number;
  /** `spread` prefers the host with the most headroom left, `pack` the one with the least. */
  strategy: 'spread' | 'pack';
  weights: { memory: number; cpu: number; storage: number };
}

export const defaultPolicy: PlacementPolicy = Object.freeze({
  cpuOvercommit: 4,
  memoryOvercommit: 1.0,
  storageOvercommit: 1.0,
  strategy: 'spread',
  weights: Object.freeze({ memory: 3, cpu: 2, storage: 1 }),
});

/**
 * The hard filters, in the order they run (cheap first). An anti-affinity rejection is reported
 * under its own name so an explanation can tell "must be with" from "must not be with".
 */
export const filterNames = [
  'state',
  'exclude',
  'capacity',
  'storage',
  'cpu',
  'firmware',
  'network',
  'affinity',
  'anti-affinity',
] as const;
export type FilterName = (typeof filterNames)[number];

export interface HostVerdict {
  hostId: string;
  host: string;
  eligible: boolean;
  filter?: FilterName;
  reason?: string;
  rating?: number;
}

export interface Placement {
  hostId: string | null;
  /** Empty unless asked to explain. */
  verdicts: HostVerdict[];
  /** One line: the host chosen and why the others were not, or why none fits. */
  summary: string;
}
