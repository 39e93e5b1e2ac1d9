/**
 * The rating of a host that passed every filter, in [0, 1], higher preferred. It is built from the
 * headroom the host keeps after taking the VM, so hosts of different sizes compare fairly.
 */
import { type Demand, poolOf } from './filters.ts';
import type { PlacementHost } from './model.ts';

const clamp01 = (x: number) => Math.max(0, Math.min(x, 1));

/**
 * Weighted mean of the headroom fractions left after placing the VM:
 *   memory  (limit − allocated − vm) / limit,   limit = memoryMiB × memoryOvercommit
 *   cpu     (limit − allocated − vm) / limit,   limit = cores × cpuOvercommit
 *   storage (free − disk) / size of pools[0]    (/ free when the size is unknown; 1 with no pool)
 */
export function headroom(host: PlacementHost, d: Demand): number {
  const { vm, policy } = d;
  const w = policy.weights;
  const memLimit = host.memoryMiB * policy.memoryOvercommit;
  const cpuLimit = host.cores * policy.cpuOvercommit;
  const mem = memLimit > 0 ? clamp01((memLimit - host.allocated.memoryMiB - vm.memoryMiB) / memLimit) : 0;
  const cpu = cpuLimit > 0 ? clamp01((cpuLimit - host.allocated.vcpus - vm.vcpus) / cpuLimit) : 0;
  let storage = 1;
  if (d.diskPool !== null) {
    const pool = poolOf(host, d.diskPool);
    if (pool !== undefined) {
      const whole = pool.sizeBytes ?? pool.freeBytes;
      storage = whole > 0 ? clamp01((pool.freeBytes - vm.diskBytes) / whole) : 0;
    }
  }
  const total = w.memory + w.cpu + w.storage;
  if (total <= 0) return 0;
  return (w.memory * mem + w.cpu * cpu + w.storage * storage) / total;
}

/**
 * `spread` rates the headroom. `pack` fills the hosts already in use first, fullest first (best
 * fit), and opens an empty host only when none of them fits — the one with the most room, so
 * it takes the most VMs before another must be opened: this keeps the count of hosts in use low.
 */
export function rating(host: PlacementHost, d: Demand): number {
  const h = headroom(host, d);
  if (d.policy.strategy === 'spread') return h;
  const inUse = host.allocated.vcpus > 0 || host.allocated.memoryMiB > 0;
  return inUse ? 0.5 + 0.5 * (1 - h) : 0.5 * h;
}

/** True when host a (rated ra) is preferred to host b (rated rb): higher rating, then name, then id. */
export function preferred(ra: number, a: PlacementHost, rb: number, b: PlacementHost): boolean {
  if (ra !== rb) return ra > rb;
  if (a.name !== b.name) return a.name < b.name;
  return a.id < b.id;
}
