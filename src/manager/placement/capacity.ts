/**
 * Capacity planning: how many more VMs of one size fit while every protected VM can still be
 * restarted after any `tolerate` online hosts fail (N+k). See README.md for the algorithm and
 * where it is conservative.
 */
import type { CapacityAnswer } from '../../wire/cluster.ts';
import { byMemoryFirst, combinations, type FailoverCluster, failover } from './failover.ts';
import { poolOf } from './filters.ts';
import { defaultPolicy, type PlacementHost, type PlacementPolicy } from './model.ts';

export interface CapacityVm {
  hostId: string;
  vcpus: number;
  memoryMiB: number;
  protected: boolean;
}

export interface CapacityQuestion {
  size: { vcpus: number; memoryMiB: number; diskBytes: number };
  /** Host failures to survive. */
  tolerate: number;
  /** Whether the new VMs must be restartable too (default true). */
  newVmsProtected?: boolean;
  /** Pool the new VMs' disks go to; without it, disk space is not counted. */
  pool?: string;
}

/** Failure sets beyond this are not enumerated; the bound answers instead. */
export const failureSetBudget = 5_000;

/** The online hosts as the failover check sees them, plus what limits new VMs on each. */
interface Cluster extends FailoverCluster {
  /** How many new VMs each host can take on its own limits (vCPUs, memory, local disk). */
  plainFit: Float64Array;
  /** Which limit gave plainFit, for limitedBy. */
  binding: string[];
  /** How many new VMs the pool allows in all (a shared pool is one budget for every host). */
  poolLimit: number;
}

export function capacity(
  hosts: readonly PlacementHost[],
  vms: readonly CapacityVm[],
  q: CapacityQuestion,
  policy: PlacementPolicy = defaultPolicy,
  opts: { failureSetBudget?: number } = {},
): CapacityAnswer {
  const k = Math.max(0, Math.floor(q.tolerate));
  const c = clusterOf(hosts, vms, q, policy);
  const n = c.names.length;
  if (k > 0 && k >= n) {
    return {
      fits: 0,
      perHost: [],
      limitedBy: `tolerating ${k} host failure${k > 1 ? 's' : ''} with ${n} online host${n === 1 ? '' : 's'} leaves no host to restart on`,
      reservedForFailover: reserve(c, new Float64Array(n), q, k),
      checked: 'none',
    };
  }
  let plainMax = 0;
  for (let i = 0; i < n; i++) plainMax += c.plainFit[i];
  plainMax = Math.min(plainMax, c.poolLimit);
  const order = fillOrder(c, plainMax);
  const counts = (fits: number) => {
    const out = new Float64Array(n);
    for (let j = 0; j < fits; j++) out[order[j]]++;
    return out;
  };
  const answer = (fits: number, limitedBy: string, checked: CapacityAnswer['checked']): CapacityAnswer => {
    const perHostCount = counts(fits);
    const perHost: CapacityAnswer['perHost'] = [];
    for (let i = 0; i < n; i++)
      if (perHostCount[i] > 0) perHost.push({ host: c.names[i], count: perHostCount[i] });
    perHost.sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
    return { fits, perHost, limitedBy, reservedForFailover: reserve(c, perHostCount, q, k), checked };
  };
  if (k === 0) return answer(plainMax, plainLimit(c, q, plainMax), 'none');

  const budget = opts.failureSetBudget ?? failureSetBudget;
  const exhaustive = combinations(n, k, budget) <= budget;
  const checked = exhaustive ? 'every failure set' : 'bound';
  const newVm = { ...q.size, protected: q.newVmsProtected !== false };
  const check = (fits: number) => failover(c, counts(fits), newVm, k, exhaustive);
  const now = check(0);
  if (now !== null) {
    return answer(0, `already short for N+${k}: ${now}`, checked);
  }
  // The fill order only adds VMs, so more VMs never make failover easier: search the largest
  // count. What the bound allows every failure set allows too, so it is where the search starts.
  const largest = (pass: (fits: number) => boolean, from: number) => {
    let lo = from;
    let hi = plainMax;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (pass(mid)) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  };
  const bounded = largest((fits) => failover(c, counts(fits), newVm, k, false) === null, 0);
  const lo = exhaustive ? largest((fits) => check(fits) === null, bounded) : bounded;
  if (lo === plainMax) return answer(lo, plainLimit(c, q, plainMax), checked);
  const why = check(lo + 1) ?? 'a later VM in the fill order strands a protected VM';
  return answer(lo, `failover (N+${k}): one more VM and ${why}`, checked);
}

/** The online hosts as the failover check counts them (also used by HA admission). */
export function clusterOf(
  hosts: readonly PlacementHost[],
  vms: readonly CapacityVm[],
  q: CapacityQuestion,
  policy: PlacementPolicy,
): Cluster {
  const online = hosts.filter((h) => h.state === 'online');
  const n = online.length;
  const index = new Map(online.map((h, i) => [h.id, i]));
  const c: Cluster = {
    names: online.map((h) => h.name),
    capCpu: new Float64Array(n),
    capMem: new Float64Array(n),
    usedCpu: new Float64Array(n),
    usedMem: new Float64Array(n),
    items: online.map(() => []),
    plainFit: new Float64Array(n),
    binding: new Array<string>(n).fill(''),
    poolLimit: Number.POSITIVE_INFINITY,
  };
  const listedCpu = new Float64Array(n);
  const listedMem = new Float64Array(n);
  for (const vm of vms) {
    const i = index.get(vm.hostId);
    if (i === undefined) continue; // not running on an online host: nothing to restart or count
    listedCpu[i] += vm.vcpus;
    listedMem[i] += vm.memoryMiB;
    if (vm.protected) c.items[i].push({ cpu: vm.vcpus, mem: vm.memoryMiB });
  }
  const { vcpus, memoryMiB, diskBytes } = q.size;
  for (let i = 0; i < n; i++) {
    const h = online[i];
    c.capCpu[i] = h.cores * policy.cpuOvercommit;
    c.capMem[i] = h.memoryMiB * policy.memoryOvercommit;
    // The host's own count and the VM list may disagree for a moment; trust the larger.
    c.usedCpu[i] = Math.max(h.allocated.vcpus, listedCpu[i]);
    c.usedMem[i] = Math.max(h.allocated.memoryMiB, listedMem[i]);
    c.items[i].sort(byMemoryFirst);
    const limits: [string, number][] = [
      ['vCPUs', vcpus > 0 ? (c.capCpu[i] - c.usedCpu[i]) / vcpus : Number.POSITIVE_INFINITY],
      ['memory', memoryMiB > 0 ? (c.capMem[i] - c.usedMem[i]) / memoryMiB : Number.POSITIVE_INFINITY],
    ];
    if (q.pool !== undefined) {
      const pool = poolOf(h, q.pool);
      if (pool === undefined) limits.push([`pool ${q.pool} not seen`, 0]);
      else if (diskBytes > 0 && pool.shared)
        c.poolLimit = Math.min(c.poolLimit, Math.floor(pool.freeBytes / diskBytes));
      else if (diskBytes > 0) limits.push([`disk in pool ${q.pool}`, pool.freeBytes / diskBytes]);
    }
    let best = limits[0];
    for (const l of limits) if (l[1] < best[1]) best = l;
    c.plainFit[i] = Number.isFinite(best[1]) ? Math.max(0, Math.floor(best[1])) : 0;
    c.binding[i] = Number.isFinite(best[1]) ? best[0] : 'a size of zero';
  }
  return c;
}

/**
 * Where the 1st, 2nd, ... new VM goes: always to the host with the most new VMs still fitting
 * (then by name), which spreads them and keeps survivors' room even. Each count is a prefix of
 * the next, so a larger answer only ever adds VMs.
 */
function fillOrder(c: Cluster, total: number): Int32Array {
  const n = c.names.length;
  const left = Float64Array.from(c.plainFit);
  // A binary max-heap of host indices keyed by room left, ties to the smaller name.
  const heap: number[] = [];
  const above = (a: number, b: number) =>
    left[a] > left[b] || (left[a] === left[b] && c.names[a] < c.names[b]);
  const up = (j: number) => {
    while (j > 0) {
      const p = (j - 1) >> 1;
      if (!above(heap[j], heap[p])) break;
      [heap[j], heap[p]] = [heap[p], heap[j]];
      j = p;
    }
  };
  const down = (j: number) => {
    for (;;) {
      const l = 2 * j + 1;
      const r = l + 1;
      let m = j;
      if (l < heap.length && above(heap[l], heap[m])) m = l;
      if (r < heap.length && above(heap[r], heap[m])) m = r;
      if (m === j) return;
      [heap[j], heap[m]] = [heap[m], heap[j]];
      j = m;
    }
  };
  for (let i = 0; i < n; i++) {
    if (left[i] > 0) {
      heap.push(i);
      up(heap.length - 1);
    }
  }
  const order = new Int32Array(total);
  for (let j = 0; j < total; j++) {
    const i = heap[0];
    order[j] = i;
    left[i]--;
    if (left[i] > 0) down(0);
    else {
      heap[0] = heap[heap.length - 1];
      heap.pop();
      if (heap.length > 0) down(0);
    }
  }
  return order;
}

function reserve(
  c: Cluster,
  added: Float64Array,
  q: CapacityQuestion,
  k: number,
): CapacityAnswer['reservedForFailover'] {
  if (k === 0) return { vcpus: 0, memoryMiB: 0 };
  const n = c.names.length;
  const newProtected = q.newVmsProtected !== false;
  const cpu: number[] = [];
  const mem: number[] = [];
  for (let i = 0; i < n; i++) {
    let pc = 0;
    let pm = 0;
    for (const it of c.items[i]) {
      pc += it.cpu;
      pm += it.mem;
    }
    if (newProtected) {
      pc += added[i] * q.size.vcpus;
      pm += added[i] * q.size.memoryMiB;
    }
    cpu.push(pc);
    mem.push(pm);
  }
  const top = (xs: number[]) =>
    xs
      .sort((a, b) => b - a)
      .slice(0, k)
      .reduce((a, b) => a + b, 0);
  return { vcpus: top(cpu), memoryMiB: top(mem) };
}

/** What stops more VMs when failover does not: the shared pool, or the limit most hosts hit. */
function plainLimit(c: Cluster, q: CapacityQuestion, fits: number): string {
  const n = c.names.length;
  if (n === 0) return 'no online host';
  let sumFit = 0;
  for (let i = 0; i < n; i++) sumFit += c.plainFit[i];
  if (c.poolLimit < sumFit) return `disk: shared pool ${q.pool} has room for ${c.poolLimit} more`;
  const tally = new Map<string, number>();
  for (let i = 0; i < n; i++) tally.set(c.binding[i], (tally.get(c.binding[i]) ?? 0) + 1);
  const parts = [...tally]
    .sort((a, b) => b[1] - a[1])
    .map(([what, hosts]) => `${what} on ${hosts} host${hosts > 1 ? 's' : ''}`);
  return `${fits === 0 ? 'no room: ' : ''}${parts.join(', ')}`;
}
