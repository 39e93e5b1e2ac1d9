/**
 * Failures-to-tolerate planning (`tern ha plan`) and admission: how many host failures every
 * protected VM survives now, what restarts where after the worst failure, and whether one more
 * protected VM keeps the cluster at its failures-to-tolerate. The N+k check itself is
 * placement's (`failover.ts`): the bound, then first-fit-decreasing packing per failure set.
 */
import { clusterOf, failureSetBudget as defaultBudget } from '../placement/capacity.ts';
import { combinations, type FailoverCluster, failover } from '../placement/failover.ts';
import { defaultPolicy, type PlacementHost, type PlacementPolicy } from '../placement/model.ts';
import { type HaVm, planRestarts, type RestartStep } from './restart-plan.ts';

export interface HaPlanInput {
  hosts: readonly PlacementHost[];
  /** The VMs running on the hosts, with their policies; only `restart` ones are protected. */
  vms: readonly HaVm[];
  failuresToTolerate: number;
  policy?: PlacementPolicy;
  /** Failure sets beyond this are not enumerated; placement's bound answers instead. */
  failureSetBudget?: number;
}

export interface Tolerance {
  /** How many online hosts may fail with room left to restart every protected VM of theirs. */
  tolerates: number;
  /** What one more failure breaks (failover's answer), or why no more can be counted. */
  limitedBy: string | null;
  /** How `tolerates` was established: each failure set of that size, or the bound alone. */
  checked: 'every failure set' | 'bound' | 'none';
}

export interface HaPlan extends Tolerance {
  failuresToTolerate: number;
  ok: boolean;
  /** One line for `tern ha plan`. */
  summary: string;
  /** The failure set the plan is for: the `failuresToTolerate` hosts holding the most protected memory. */
  failureSet: string[];
  /** What restarts where after that failure; notBeforeMs counts from 0, the failure. */
  plan: RestartStep[];
}

export interface Admission {
  admitted: boolean;
  /** Failures tolerated now, and with the VM added. */
  before: number;
  after: number;
  failuresToTolerate: number;
  reason: string;
}

// Admission keeps room for `restart` VMs only; best-effort ones are fenced but not guaranteed room.
const needsRoom = (v: HaVm) => v.policy.restart === 'restart';
const failures = (n: number) => `${n} host failure${n === 1 ? '' : 's'}`;

/**
 * Counts up from one failure until the check fails. The truth is monotone (a placement that
 * survives a set survives any subset), so the first failing count ends the search.
 */
export function tolerance(input: HaPlanInput): Tolerance {
  const policy = input.policy ?? defaultPolicy;
  const budget = input.failureSetBudget ?? defaultBudget;
  const c = failoverCluster(input.hosts, input.vms, policy);
  const n = c.names.length;
  if (c.items.every((items) => items.length === 0)) {
    return { tolerates: n, limitedBy: null, checked: 'none' };
  }
  const none = new Float64Array(n);
  const noNewVm = { vcpus: 0, memoryMiB: 0, protected: false };
  let tolerates = 0;
  let checked: Tolerance['checked'] = 'none';
  for (let k = 1; k < n; k++) {
    const exhaustive = combinations(n, k, budget) <= budget;
    const broken = failover(c, none, noNewVm, k, exhaustive);
    if (broken !== null) return { tolerates, limitedBy: broken, checked };
    tolerates = k;
    checked = exhaustive ? 'every failure set' : 'bound';
  }
  return {
    tolerates,
    limitedBy: `with ${n} online host${n === 1 ? '' : 's'}, ${failures(n)} leave none to restart on`,
    checked,
  };
}

export function haPlan(input: HaPlanInput): HaPlan {
  const k = Math.max(0, Math.floor(input.failuresToTolerate));
  const t = tolerance(input);
  const ok = t.tolerates >= k;
  const online = input.hosts.filter((h) => h.state === 'online');
  const failureSet = heaviest(online, input.vms, Math.min(k, Math.max(0, online.length - 1)));
  const failed = new Set(failureSet);
  const plan =
    failureSet.length === 0
      ? []
      : planRestarts({
          failedHostIds: failureSet,
          vms: input.vms,
          survivors: counted(
            online.filter((h) => !failed.has(h.id)),
            input.vms,
          ),
          policy: input.policy,
          atMs: 0,
        });
  const now = `tolerates ${failures(t.tolerates)}`;
  const summary = ok
    ? `${now} (${k} required)`
    : `${now}, fewer than the ${k} required: ${t.limitedBy ?? 'no room'}`;
  return { ...t, failuresToTolerate: k, ok, summary, failureSet, plan };
}

/**
 * Whether `vm` may run on `targetHostId` with the cluster still tolerating its failures: its size
 * counts on the target and, when protected, it must itself be restartable. `hosts` must not
 * count it yet (the inventory's snapshot `without` it).
 */
export function admit(vm: Omit<HaVm, 'hostId'>, targetHostId: string, input: HaPlanInput): Admission {
  const k = Math.max(0, Math.floor(input.failuresToTolerate));
  const before = tolerance(input);
  const target = input.hosts.find((h) => h.id === targetHostId);
  if (target === undefined || target.state !== 'online') {
    const reason = `host ${target?.name ?? targetHostId} is not online`;
    return { admitted: false, before: before.tolerates, after: 0, failuresToTolerate: k, reason };
  }
  const d = vm.demand;
  const hosts = input.hosts.map((h) =>
    h === target
      ? {
          ...h,
          allocated: { vcpus: h.allocated.vcpus + d.vcpus, memoryMiB: h.allocated.memoryMiB + d.memoryMiB },
        }
      : h,
  );
  const vms = [...input.vms, { ...vm, hostId: targetHostId }];
  const after = tolerance({ ...input, hosts, vms });
  const admitted = after.tolerates >= k;
  let reason: string;
  if (admitted) reason = `the cluster still tolerates ${failures(after.tolerates)} with it (${k} required)`;
  else if (before.tolerates < k)
    reason = `the cluster already tolerates only ${failures(before.tolerates)} of the ${k} required: ${before.limitedBy}`;
  else
    reason =
      `on ${target.name} it leaves room for ${failures(after.tolerates)}, fewer than the ${k} required: ` +
      `${after.limitedBy}`;
  return { admitted, before: before.tolerates, after: after.tolerates, failuresToTolerate: k, reason };
}

/** The online hosts as failover.ts sees them, built by capacity planning's own `clusterOf`. */
function failoverCluster(
  hosts: readonly PlacementHost[],
  vms: readonly HaVm[],
  policy: PlacementPolicy,
): FailoverCluster {
  const listed = vms.map((v) => ({
    hostId: v.hostId,
    vcpus: v.demand.vcpus,
    memoryMiB: v.demand.memoryMiB,
    protected: needsRoom(v),
  }));
  // No new VM is asked about here: the size only feeds capacity's own plain count.
  return clusterOf(hosts, listed, { size: { vcpus: 0, memoryMiB: 0, diskBytes: 0 }, tolerate: 0 }, policy);
}

/** The hosts with `allocated` at least what their listed VMs take, as the failover check counts them. */
function counted(hosts: readonly PlacementHost[], vms: readonly HaVm[]): PlacementHost[] {
  const listed = new Map<string, { vcpus: number; memoryMiB: number }>();
  for (const vm of vms) {
    const l = listed.get(vm.hostId) ?? { vcpus: 0, memoryMiB: 0 };
    l.vcpus += vm.demand.vcpus;
    l.memoryMiB += vm.demand.memoryMiB;
    listed.set(vm.hostId, l);
  }
  return hosts.map((h) => {
    const l = listed.get(h.id);
    if (l === undefined || (l.vcpus <= h.allocated.vcpus && l.memoryMiB <= h.allocated.memoryMiB)) return h;
    const allocated = {
      vcpus: Math.max(h.allocated.vcpus, l.vcpus),
      memoryMiB: Math.max(h.allocated.memoryMiB, l.memoryMiB),
    };
    return { ...h, allocated };
  });
}

/** The `k` hosts holding the most protected memory (then vCPUs, then by name): the worst to lose. */
function heaviest(online: readonly PlacementHost[], vms: readonly HaVm[], k: number): string[] {
  if (k === 0) return [];
  const load = new Map(online.map((h) => [h.id, { mem: 0, cpu: 0, name: h.name }]));
  for (const vm of vms) {
    const l = load.get(vm.hostId);
    if (l === undefined || !needsRoom(vm)) continue;
    l.mem += vm.demand.memoryMiB;
    l.cpu += vm.demand.vcpus;
  }
  return [...load]
    .sort(
      ([, a], [, b]) => b.mem - a.mem || b.cpu - a.cpu || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
    )
    .slice(0, k)
    .map(([id]) => id);
}
