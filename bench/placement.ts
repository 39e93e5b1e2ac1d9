/**
 * bench/placement: placement decisions over a simulated cluster. 1,000 hosts (64–512 GiB, 16–128
 * cores, two Intel generations, a few in maintenance or offline, two shared pools and a local one)
 * take 100,000 VMs of mixed sizes, some in anti-affinity or affinity groups; each decision is
 * applied to the chosen host before the next. Reports decisions/s and per-decision latency for
 * spread and pack, how many hosts pack used against the lower bound (total demand over the
 * largest hosts' capacity on the binding dimension) and how full it left them, and what one
 * explained decision costs (unexplained, the same decision on the same final state, beside it).
 *
 *   node bench/placement.ts [--hosts 1000] [--vms 100000] [--seed 1]
 */
import { parseArgs } from 'node:util';
import { cpuModel } from '../src/manager/placement/cpu-models.ts';
import { defaultPolicy, type PlacementHost, type VmDemand } from '../src/manager/placement/model.ts';
import { place } from '../src/manager/placement/place.ts';
import { seededRandom } from '../test/seeded-random.ts';
import { percentile, table } from './report.ts';

const { values } = parseArgs({
  options: {
    hosts: { type: 'string', default: '1000' },
    vms: { type: 'string', default: '100000' },
    seed: { type: 'string', default: '1' },
  },
});
const hostCount = Number(values.hosts);
const vmCount = Number(values.vms);

const GiB = 1024 ** 3;
const TiB = 1024 * GiB;

const pick = <T>(rnd: () => number, xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];

type Host = PlacementHost & { allocated: { vcpus: number; memoryMiB: number }; groups: Map<string, number> };

// What every host of these generations prints besides its model's distinguishing flags.
const legacy =
  'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss ht ' +
  'arch_capabilities md_clear flush_l1d';
const generations = [
  { model: 'Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz', flags: cpuModel('Cascadelake-Server-noTSX')!.flags },
  { model: 'Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz', flags: cpuModel('Icelake-Server-noTSX')!.flags },
];
const shapes = [
  { memGiB: 64, cores: 16 },
  { memGiB: 128, cores: 32 },
  { memGiB: 256, cores: 48 },
  { memGiB: 384, cores: 64 },
  { memGiB: 512, cores: 128 },
];

function cluster(seed: number): Host[] {
  const rnd = seededRandom(seed);
  // Shared pools are one object every host points at, so a disk created there is seen by all.
  const sharedA = { name: 'shared-a', shared: true, freeBytes: 8192 * TiB };
  const sharedB = { name: 'shared-b', shared: true, freeBytes: 4096 * TiB };
  return Array.from({ length: hostCount }, (_, i) => {
    const shape = pick(rnd, shapes);
    const gen = i % 3 === 0 ? generations[0] : generations[1];
    const r = rnd();
    return {
      id: `h-${i}`,
      name: `host-${String(i).padStart(4, '0')}`,
      state: r < 0.02 ? 'maintenance' : r < 0.03 ? 'offline' : 'online',
      cores: shape.cores,
      memoryMiB: shape.memGiB * 1024,
      cpu: {
        vendor: 'GenuineIntel',
        model: gen.model,
        flags: [...new Set([...legacy.split(' '), ...gen.flags])],
      },
      pools: [
        sharedA,
        ...(i % 2 === 0 ? [sharedB] : []),
        { name: 'local', shared: false, freeBytes: 4 * TiB },
      ],
      allocated: { vcpus: 0, memoryMiB: 0 },
      groups: new Map(),
    };
  });
}

// About 60% of the cluster's memory and 50% of its vCPUs, so pack has room to leave hosts empty.
const sizes = [
  { w: 0.35, vcpus: 1, memoryMiB: 512 },
  { w: 0.3, vcpus: 1, memoryMiB: 1024 },
  { w: 0.2, vcpus: 1, memoryMiB: 2048 },
  { w: 0.12, vcpus: 2, memoryMiB: 4096 },
  { w: 0.03, vcpus: 4, memoryMiB: 8192 },
];

function pickSize(x: number): (typeof sizes)[number] {
  let acc = 0;
  for (const s of sizes) {
    acc += s.w;
    if (x < acc) return s;
  }
  return sizes[0];
}

function demands(seed: number): VmDemand[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: vmCount }, (): VmDemand => {
    const size = pickSize(rnd());
    const p = rnd();
    const pool = p < 0.5 ? 'shared-a' : p < 0.7 ? 'shared-b' : 'local';
    const g = rnd();
    return {
      vcpus: size.vcpus,
      memoryMiB: size.memoryMiB,
      diskBytes: (10 + Math.floor(rnd() * 90)) * GiB,
      pools: [pool],
      cpu: rnd() < 0.8 ? { mode: 'compat', model: 'Cascadelake-Server-noTSX' } : { mode: 'host' },
      groups:
        g < 0.1
          ? [{ name: `web-${Math.floor(rnd() * 4000)}`, kind: 'anti-affinity' }]
          : g < 0.13
            ? [{ name: `app-${Math.floor(rnd() * 1000)}`, kind: 'affinity' }]
            : [],
    };
  });
}

function apply(host: Host, vm: VmDemand): void {
  host.allocated.vcpus += vm.vcpus;
  host.allocated.memoryMiB += vm.memoryMiB;
  for (const g of vm.groups) host.groups.set(g.name, (host.groups.get(g.name) ?? 0) + 1);
  const pool = host.pools.find((p) => p.name === vm.pools[0]) as { freeBytes: number };
  pool.freeBytes -= vm.diskBytes;
}

/** Fewest hosts that could hold the placed demand: the largest online hosts first, on the tighter dimension. */
function lowerBound(hosts: Host[], vcpus: number, memoryMiB: number): number {
  const online = hosts.filter((h) => h.state === 'online');
  const need = (caps: number[], total: number) => {
    caps.sort((a, b) => b - a);
    let n = 0;
    for (let sum = 0; sum < total && n < caps.length; n++) sum += caps[n];
    return n;
  };
  return Math.max(
    need(
      online.map((h) => h.cores * defaultPolicy.cpuOvercommit),
      vcpus,
    ),
    need(
      online.map((h) => h.memoryMiB * defaultPolicy.memoryOvercommit),
      memoryMiB,
    ),
  );
}

function run(strategy: 'spread' | 'pack') {
  const hosts = cluster(Number(values.seed));
  const byId = new Map(hosts.map((h) => [h.id, h]));
  const vms = demands(Number(values.seed) + 1);
  const policy = { ...defaultPolicy, strategy };
  const times = new Float64Array(vms.length);
  let unplaced = 0;
  let unplacedAffinity = 0;
  let placed = 0;
  let vcpus = 0;
  let memoryMiB = 0;
  const t0 = performance.now();
  for (let i = 0; i < vms.length; i++) {
    const s = performance.now();
    const p = place(hosts, vms[i], policy);
    times[i] = performance.now() - s;
    if (p.hostId === null) {
      unplaced++;
      // Mostly members of an affinity group whose host is full or cannot see their pool.
      if (vms[i].groups.some((g) => g.kind === 'affinity')) unplacedAffinity++;
    } else {
      apply(byId.get(p.hostId)!, vms[i]);
      placed++;
      vcpus += vms[i].vcpus;
      memoryMiB += vms[i].memoryMiB;
    }
  }
  const total = performance.now() - t0;
  const sorted = Array.from(times);
  const usedHosts = hosts.filter((h) => h.allocated.vcpus > 0);
  const used = usedHosts.length;
  const usedMemory = usedHosts.reduce((a, h) => a + h.memoryMiB * policy.memoryOvercommit, 0);
  // One explained decision on the final state, against the same decision unexplained.
  const probe = vms[0];
  const reps = 200;
  let e0 = performance.now();
  for (let i = 0; i < reps; i++) place(hosts, probe, policy, { explain: true });
  const explainMs = (performance.now() - e0) / reps;
  e0 = performance.now();
  for (let i = 0; i < reps; i++) place(hosts, probe, policy);
  const plainMs = (performance.now() - e0) / reps;
  return {
    strategy,
    perSecond: (vms.length / total) * 1000,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    placed,
    used,
    bound: lowerBound(hosts, vcpus, memoryMiB),
    fill: memoryMiB / usedMemory,
    unplaced,
    unplacedAffinity,
    explainMs,
    plainMs,
    summary: place(hosts, probe, policy).summary,
  };
}

// Warm the JIT on a small run so the first strategy measured is not penalised.
place(cluster(9), demands(9)[0], defaultPolicy);

const results = [run('spread'), run('pack')];
console.log(`${hostCount} hosts, ${vmCount} placements applied one after another (ms per decision)\n`);
table(
  [
    'strategy',
    'decisions/s',
    'p50 ms',
    'p99 ms',
    'placed',
    'not placed',
    'of them affinity',
    'hosts used',
    'lower bound',
    'mem fill of used',
    'explain ms',
    'plain ms',
  ],
  results.map((r) => [
    r.strategy,
    Math.round(r.perSecond),
    r.p50.toFixed(3),
    r.p99.toFixed(3),
    r.placed,
    r.unplaced,
    r.unplacedAffinity,
    r.used,
    r.bound,
    `${(r.fill * 100).toFixed(1)}%`,
    r.explainMs.toFixed(3),
    r.plainMs.toFixed(3),
  ]),
);
console.log(`\nlast decision (spread): ${results[0].summary}`);
console.log(`last decision (pack): ${results[1].summary}`);
const worst = Math.min(...results.map((r) => r.perSecond));
console.log(
  `\nFigure: ${Math.round(worst)} decisions/s at ${hostCount} hosts (slower strategy; goal 5,000), ` +
    `${(1e9 / worst / hostCount).toFixed(0)} ns per host per decision`,
);
