/**
 * The hard filters: a host that fails one never takes the VM. Each runs without allocating, since
 * a decision checks every host of the cluster; the human reason is built only when asked.
 */
import { cpuDifference, cpuIdentityKey, modelChecker, supportsModel } from './cpu-models.ts';
import type { CpuIdentity, FilterName, HostPool, PlacementHost, PlacementPolicy, VmDemand } from './model.ts';

/** What one decision computes once so the per-host checks stay cheap. */
export interface Demand {
  vm: VmDemand;
  policy: PlacementPolicy;
  exclude: readonly string[];
  /** Pool the new disk bytes go to (vm.pools[0]), or null. */
  diskPool: string | null;
  /** Affinity groups that have members somewhere: only hosts holding members pass. */
  together: readonly string[];
  /** Anti-affinity groups: hosts holding a member are rejected. */
  apart: readonly string[];
  /** For mode compat: whether a host's CPU runs the model; null otherwise. */
  runsModel: ((cpu: CpuIdentity) => boolean) | null;
  /** For mode host with sameAs: the identity key every host must match; 0 otherwise. */
  sameAsKey: number;
}

/**
 * Prepares a decision. `hosts` is needed to know which affinity groups already have members:
 * a group with none yet constrains nothing, so its first member can go anywhere.
 */
export function demandOf(
  hosts: readonly PlacementHost[],
  vm: VmDemand,
  policy: PlacementPolicy,
  groupHasMembers?: (group: string) => boolean,
): Demand {
  const together: string[] = [];
  const apart: string[] = [];
  for (const g of vm.groups) {
    if (g.kind === 'anti-affinity') apart.push(g.name);
    else if (groupHasMembers ? groupHasMembers(g.name) : hosts.some((h) => (h.groups.get(g.name) ?? 0) > 0)) {
      together.push(g.name);
    }
  }
  return {
    vm,
    policy,
    exclude: vm.exclude ?? [],
    diskPool: vm.pools.length > 0 ? vm.pools[0] : null,
    together,
    apart,
    runsModel: vm.cpu.mode === 'compat' ? modelChecker(vm.cpu.model) : null,
    sameAsKey: vm.cpu.mode === 'host' && vm.cpu.sameAs ? cpuIdentityKey(vm.cpu.sameAs) : 0,
  };
}

export function poolOf(host: PlacementHost, name: string): HostPool | undefined {
  const pools = host.pools;
  for (let i = 0; i < pools.length; i++) if (pools[i].name === name) return pools[i];
  return undefined;
}

export function passesState(host: PlacementHost): boolean {
  return host.state === 'online';
}

export function passesExclude(host: PlacementHost, d: Demand): boolean {
  const ex = d.exclude;
  for (let i = 0; i < ex.length; i++) if (ex[i] === host.id) return false;
  return true;
}

/** Whether a pool with `freeBytes` free may take `bytes` more of virtual disk size. */
export function fitsPool(freeBytes: number, bytes: number, storageOvercommit: number): boolean {
  return bytes <= freeBytes * storageOvercommit;
}

export function passesCapacity(host: PlacementHost, d: Demand): boolean {
  const { vm, policy } = d;
  if (host.allocated.vcpus + vm.vcpus > host.cores * policy.cpuOvercommit) return false;
  if (host.allocated.memoryMiB + vm.memoryMiB > host.memoryMiB * policy.memoryOvercommit) return false;
  if (vm.diskBytes > 0 && d.diskPool !== null) {
    const pool = poolOf(host, d.diskPool);
    // A pool the host cannot see is the storage filter's to report.
    if (pool !== undefined && !fitsPool(pool.freeBytes, vm.diskBytes, policy.storageOvercommit)) return false;
  }
  return true;
}

export function passesStorage(host: PlacementHost, d: Demand): boolean {
  const wanted = d.vm.pools;
  for (let i = 0; i < wanted.length; i++) if (poolOf(host, wanted[i]) === undefined) return false;
  return true;
}

export function passesCpu(host: PlacementHost, d: Demand): boolean {
  if (d.runsModel !== null) return d.runsModel(host.cpu);
  return d.sameAsKey === 0 || cpuIdentityKey(host.cpu) === d.sameAsKey;
}

/** The first of the VM's networks the host lacks (not realized, or failed), or null. */
export function missingNetwork(host: PlacementHost, d: Demand): string | null {
  const wanted = d.vm.networks;
  if (!wanted || !host.networks) return null;
  for (let i = 0; i < wanted.length; i++) if (!host.networks.get(wanted[i])?.ready) return wanted[i];
  return null;
}

/** 'affinity' or 'anti-affinity' when the host breaks a group rule, null when it keeps them all. */
export function groupRejection(host: PlacementHost, d: Demand): 'affinity' | 'anti-affinity' | null {
  const groups = host.groups;
  if (groups.size === 0) return d.together.length > 0 ? 'affinity' : null;
  for (let i = 0; i < d.apart.length; i++) if ((groups.get(d.apart[i]) ?? 0) > 0) return 'anti-affinity';
  for (let i = 0; i < d.together.length; i++) if (!((groups.get(d.together[i]) ?? 0) > 0)) return 'affinity';
  return null;
}

/** The first filter the host fails, in the order of `filterNames`, or null when it may take the VM. */
export function firstRejection(host: PlacementHost, d: Demand): FilterName | null {
  if (!passesState(host)) return 'state';
  if (d.exclude.length > 0 && !passesExclude(host, d)) return 'exclude';
  if (!passesCapacity(host, d)) return 'capacity';
  if (!passesStorage(host, d)) return 'storage';
  if (!passesCpu(host, d)) return 'cpu';
  if (d.vm.uefi && !host.uefi) return 'firmware';
  if (d.vm.networks?.length && missingNetwork(host, d) !== null) return 'network';
  if (d.together.length > 0 || d.apart.length > 0) return groupRejection(host, d);
  return null;
}

const GiB = 1024 ** 3;
export const formatBytes = (n: number) =>
  n >= GiB ? `${(n / GiB).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`;
const num = (n: number) => String(Math.round(n * 100) / 100);
const ratio = (n: number) => (Number.isInteger(n) ? n.toFixed(1) : num(n));

/** Why the host failed `filter`, naming the numbers; for explanations only. */
export function rejectionReason(host: PlacementHost, d: Demand, filter: FilterName): string {
  const { vm, policy } = d;
  switch (filter) {
    case 'state':
      return `host is ${host.state}; only online hosts take VMs`;
    case 'exclude':
      return 'host is excluded (the VM is moving away from it)';
    case 'capacity': {
      const cpuLimit = host.cores * policy.cpuOvercommit;
      const cpuFree = cpuLimit - host.allocated.vcpus;
      if (vm.vcpus > cpuFree) {
        return `needs ${vm.vcpus} vCPUs, ${num(Math.max(0, cpuFree))} free of ${host.cores} cores × ${ratio(policy.cpuOvercommit)}`;
      }
      const memLimit = host.memoryMiB * policy.memoryOvercommit;
      const memFree = memLimit - host.allocated.memoryMiB;
      if (vm.memoryMiB > memFree) {
        return `needs ${vm.memoryMiB} MiB, ${num(Math.max(0, memFree))} MiB free of ${host.memoryMiB} × ${ratio(policy.memoryOvercommit)}`;
      }
      const pool = d.diskPool === null ? undefined : poolOf(host, d.diskPool);
      return `needs ${formatBytes(vm.diskBytes)} in pool ${d.diskPool}, ${formatBytes(pool?.freeBytes ?? 0)} free × ${ratio(policy.storageOvercommit)}`;
    }
    case 'storage': {
      const missing = vm.pools.filter((p) => poolOf(host, p) === undefined);
      return `cannot see pool${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`;
    }
    case 'cpu': {
      const cpu = vm.cpu;
      if (cpu.mode === 'compat') {
        const s = supportsModel(host.cpu, cpu.model);
        return s.ok ? '' : `cannot run CPU model ${cpu.model}: missing ${s.missing.join(', ')}`;
      }
      return `not the same CPU as the VM's (${cpuDifference(host.cpu, cpu.sameAs!)})`;
    }
    case 'firmware':
      return 'has no UEFI firmware (install the ovmf package; tern doctor)';
    case 'network': {
      const id = missingNetwork(host, d)!;
      const n = host.networks?.get(id);
      if (!n) return `has no network ${id}: the inventory does not know it`;
      return n.reason === null
        ? `has not realized network ${n.name} yet`
        : `lacks network ${n.name}: ${n.reason}`;
    }
    case 'affinity': {
      const g = d.together.find((name) => !((host.groups.get(name) ?? 0) > 0));
      return `holds no member of affinity group ${g}, whose members are on other hosts`;
    }
    case 'anti-affinity': {
      const g = d.apart.find((name) => (host.groups.get(name) ?? 0) > 0)!;
      const n = host.groups.get(g)!;
      return `holds ${n} member${n > 1 ? 's' : ''} of anti-affinity group ${g}`;
    }
  }
}
