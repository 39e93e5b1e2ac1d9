/**
 * The N+k check: can every protected VM of any `k` failed hosts restart on the others, with the
 * new VMs in place? Each failure set is first held against a bound (cheap, sound); a set the
 * bound cannot clear is packed first-fit decreasing. Without enumeration, the bound alone answers
 * for the worst set. README.md has the argument.
 */

export interface Item {
  cpu: number;
  mem: number;
}

/** The online hosts as flat arrays, so the checks run over numbers. */
export interface FailoverCluster {
  names: string[];
  capCpu: Float64Array;
  capMem: Float64Array;
  usedCpu: Float64Array;
  usedMem: Float64Array;
  /** Protected VMs per host, largest memory first. */
  items: Item[][];
}

/** The new VMs: their size and whether they must be restartable too. */
export interface NewVm {
  vcpus: number;
  memoryMiB: number;
  protected: boolean;
}

export const byMemoryFirst = (a: Item, b: Item) => b.mem - a.mem || b.cpu - a.cpu;

/**
 * Null when every protected VM of any `k` failed hosts can restart on the others with `added`
 * new VMs in place; otherwise which failure breaks it. Each failure set is first tried against
 * the bound (cheap); a set the bound cannot clear is packed first-fit decreasing.
 */
export function failover(
  c: FailoverCluster,
  added: Float64Array,
  newVm: NewVm,
  k: number,
  exhaustive: boolean,
): string | null {
  const n = c.names.length;
  const s = newVm;
  const newProtected = newVm.protected;
  const remCpu = new Float64Array(n);
  const remMem = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    remCpu[i] = c.capCpu[i] - c.usedCpu[i] - added[i] * s.vcpus;
    remMem[i] = c.capMem[i] - c.usedMem[i] - added[i] * s.memoryMiB;
  }
  // The bound, in units of the largest protected VM (see README): a host in a failure set takes
  // `load` with it, a survivor offers `room`; first fit cannot fail while load ≤ room.
  let unitCpu = 0;
  let unitMem = 0;
  for (let i = 0; i < n; i++) {
    for (const it of c.items[i]) {
      if (it.cpu > unitCpu) unitCpu = it.cpu;
      if (it.mem > unitMem) unitMem = it.mem;
    }
  }
  if (newProtected && added.some((x) => x > 0)) {
    unitCpu = Math.max(unitCpu, s.vcpus);
    unitMem = Math.max(unitMem, s.memoryMiB);
  }
  if (unitCpu === 0 && unitMem === 0) return null; // nothing protected: nothing to restart
  const normCpu = unitCpu > 0 ? 1 / unitCpu : 0;
  const normMem = unitMem > 0 ? 1 / unitMem : 0;
  const size = (cpu: number, mem: number) => Math.max(cpu * normCpu, mem * normMem);
  const load = new Float64Array(n);
  const room = new Float64Array(n);
  let totalRoom = 0;
  for (let i = 0; i < n; i++) {
    let l = 0;
    for (const it of c.items[i]) l += size(it.cpu, it.mem);
    if (newProtected) l += added[i] * size(s.vcpus, s.memoryMiB);
    load[i] = l;
    const slack = Math.min(
      unitCpu > 0 ? remCpu[i] / unitCpu : Number.POSITIVE_INFINITY,
      unitMem > 0 ? remMem[i] / unitMem : Number.POSITIVE_INFINITY,
    );
    room[i] = Math.max(0, slack - 1);
    totalRoom += room[i];
  }
  // Hosts whose failure hurts most first, so a failing set is found early.
  const worst = Array.from({ length: n }, (_, i) => i).sort(
    (a, b) => load[b] + room[b] - (load[a] + room[a]) || (c.names[a] < c.names[b] ? -1 : 1),
  );
  const label = (set: readonly number[]) => set.map((i) => c.names[i]).join(', ');
  if (!exhaustive) {
    const set = worst.slice(0, k);
    let taken = 0;
    for (const i of set) taken += load[i] + room[i];
    return taken <= totalRoom + 1e-9
      ? null
      : `protected VMs of hosts like ${label(set)} could lack room to restart (bound over ${n} hosts)`;
  }
  // First fit over survivors in order of free memory; a bin only loses room, so once a bin's
  // starting memory is below an item's, no later bin can take it.
  const bins = Array.from({ length: n }, (_, i) => i).sort((a, b) => remMem[b] - remMem[a]);
  const curCpu = Float64Array.from(remCpu);
  const curMem = Float64Array.from(remMem);
  const failed = new Uint8Array(n);
  const touched: number[] = [];
  const displaced: Item[] = [];
  const newItem: Item = { cpu: s.vcpus, mem: s.memoryMiB };
  const packs = (set: readonly number[]): boolean => {
    let taken = 0;
    for (const i of set) taken += load[i] + room[i];
    if (taken <= totalRoom + 1e-9) return true;
    displaced.length = 0;
    for (const i of set) {
      for (const it of c.items[i]) displaced.push(it);
      if (newProtected) for (let j = 0; j < added[i]; j++) displaced.push(newItem);
      failed[i] = 1;
    }
    displaced.sort(byMemoryFirst);
    let ok = true;
    let prev: Item | null = null;
    let from = 0;
    for (const it of displaced) {
      // Bins before the one the same-sized item went to could not take it then and have only
      // lost room since: the next one like it starts there (runs of new VMs stay linear).
      if (prev === null || prev.cpu !== it.cpu || prev.mem !== it.mem) from = 0;
      prev = it;
      let placed = false;
      for (let j = from; j < n; j++) {
        const b = bins[j];
        if (remMem[b] < it.mem) break;
        if (failed[b] === 1 || curCpu[b] < it.cpu || curMem[b] < it.mem) continue;
        curCpu[b] -= it.cpu;
        curMem[b] -= it.mem;
        touched.push(b);
        placed = true;
        from = j;
        break;
      }
      if (!placed) {
        ok = false;
        break;
      }
    }
    for (const b of touched) {
      curCpu[b] = remCpu[b];
      curMem[b] = remMem[b];
    }
    touched.length = 0;
    for (const i of set) failed[i] = 0;
    return ok;
  };
  let bad: number[] | null = null;
  eachCombination(n, k, (picked) => {
    const set = picked.map((j) => worst[j]);
    if (packs(set)) return true;
    bad = set;
    return false;
  });
  if (bad === null) return null;
  return `protected VMs of ${label(bad)} would lack room to restart on the other hosts`;
}

/** C(n, k), capped once it passes the budget (only compared against it). */
export function combinations(n: number, k: number, budget: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) {
    r = (r * (n - k + i)) / i;
    if (r > budget * 10) return r;
  }
  return Math.round(r);
}

/** Calls `visit` with each k-subset of 0..n-1 in lexicographic order until it returns false. */
function eachCombination(n: number, k: number, visit: (picked: number[]) => boolean): void {
  const picked = Array.from({ length: k }, (_, i) => i);
  for (;;) {
    if (!visit(picked)) return;
    let i = k - 1;
    while (i >= 0 && picked[i] === n - k + i) i--;
    if (i < 0) return;
    picked[i]++;
    for (let j = i + 1; j < k; j++) picked[j] = picked[j - 1] + 1;
  }
}
