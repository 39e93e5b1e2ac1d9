/**
 * One placement decision: run the filters over every host, rate the ones left, take the best.
 * With `explain`, every host gets a verdict with its reason or rating; without it, the loop
 * allocates nothing per host (it runs over thousands of hosts many times a second).
 */
import { type Demand, demandOf, firstRejection, formatBytes, rejectionReason } from './filters.ts';
import {
  defaultPolicy,
  type FilterName,
  filterNames,
  type HostVerdict,
  type Placement,
  type PlacementHost,
  type PlacementPolicy,
  type VmDemand,
} from './model.ts';
import { preferred, rating } from './rating.ts';

export interface PlaceOptions {
  explain?: boolean;
}

export function place(
  hosts: readonly PlacementHost[],
  vm: VmDemand,
  policy: PlacementPolicy = defaultPolicy,
  opts: PlaceOptions = {},
): Placement {
  return decide(hosts, demandOf(hosts, vm, policy), opts.explain === true);
}

/** The decision over prepared demand; shared with callers that keep their own group index. */
export function decide(hosts: readonly PlacementHost[], d: Demand, explain: boolean): Placement {
  const rejected = new Array<number>(filterNames.length).fill(0);
  const verdicts: HostVerdict[] = [];
  let best: PlacementHost | null = null;
  let bestRating = -1;
  for (let i = 0; i < hosts.length; i++) {
    const host = hosts[i];
    const filter = firstRejection(host, d);
    if (filter !== null) {
      rejected[filterNames.indexOf(filter)]++;
      if (explain) {
        verdicts.push({
          hostId: host.id,
          host: host.name,
          eligible: false,
          filter,
          reason: rejectionReason(host, d, filter),
        });
      }
      continue;
    }
    const r = rating(host, d);
    if (explain) verdicts.push({ hostId: host.id, host: host.name, eligible: true, rating: round(r) });
    if (best === null || preferred(r, host, bestRating, best)) {
      best = host;
      bestRating = r;
    }
  }
  return {
    hostId: best?.id ?? null,
    verdicts,
    summary: summarize(best, bestRating, rejected, hosts.length, d),
  };
}

const round = (r: number) => Math.round(r * 1000) / 1000;

function rejections(rejected: readonly number[]): { total: number; text: string } {
  let total = 0;
  const parts: string[] = [];
  // Most common reason first, so the line leads with what to fix.
  const order = filterNames.map((name, i) => ({ name, n: rejected[i] })).filter((x) => x.n > 0);
  order.sort((a, b) => b.n - a.n);
  for (const { name, n } of order) {
    total += n;
    parts.push(`${n} by ${name}`);
  }
  return { total, text: parts.join(', ') };
}

function summarize(
  best: PlacementHost | null,
  bestRating: number,
  rejected: readonly number[],
  hostCount: number,
  d: Demand,
): string {
  const { total, text } = rejections(rejected);
  const plural = (n: number) => `${n} host${n === 1 ? '' : 's'}`;
  if (best !== null) {
    const head = `${best.name} chosen (rating ${bestRating.toFixed(2)})`;
    return total === 0 ? `${head}; no host rejected` : `${head}; ${plural(total)} rejected: ${text}`;
  }
  const vm = d.vm;
  const need =
    `${vm.vcpus} vCPUs, ${vm.memoryMiB} MiB` +
    (vm.diskBytes > 0 && d.diskPool !== null ? `, ${formatBytes(vm.diskBytes)} in ${d.diskPool}` : '');
  if (hostCount === 0) return `no host fits (needs ${need}): the cluster has no hosts`;
  return `no host fits (needs ${need}): all ${plural(hostCount)} rejected: ${text}`;
}

/** How many hosts each filter rejected, from an explained placement (for tables and tests). */
export function rejectionCounts(p: Placement): Partial<Record<FilterName, number>> {
  const out: Partial<Record<FilterName, number>> = {};
  for (const v of p.verdicts) if (v.filter) out[v.filter] = (out[v.filter] ?? 0) + 1;
  return out;
}
