/**
 * What restarts where after hosts fail, and in what order: protected VMs (`restart`) first by
 * priority and order, then `best-effort` ones in the room left. Each VM goes through placement
 * (capacity, storage, CPU, affinity and anti-affinity) with the VMs placed before it counted.
 */
import type { RestartPolicy, VmHaPolicy } from '../../wire/ha.ts';
import {
  defaultPolicy,
  type PlacementHost,
  type PlacementPolicy,
  type VmDemand,
} from '../placement/model.ts';
import { place } from '../placement/place.ts';

/** A VM as HA sees it: where it runs, its restart policy and what a host must give it. */
export interface HaVm {
  vmId: string;
  hostId: string;
  policy: VmHaPolicy;
  /** Its demand for a restart: disks already on shared storage, so usually diskBytes 0. */
  demand: VmDemand;
}

export interface RestartRequest {
  failedHostIds: readonly string[];
  /** The VMs of the failed hosts (VMs on other hosts are ignored). */
  vms: readonly HaVm[];
  /** The hosts left; any failed host listed here is left out. */
  survivors: readonly PlacementHost[];
  policy?: PlacementPolicy;
  /** When the hosts were declared failed: the earliest time of the first restart. */
  atMs: number;
}

export interface RestartStep {
  vmId: string;
  fromHostId: string;
  restart: RestartPolicy;
  /** Where it restarts; null when it does not (policy `none`, or no host fits). */
  hostId: string | null;
  /** Why it does not restart: the policy, or placement's summary of why no host fits. */
  reason?: string;
  /** Not to be started before this (delays accumulate along the order). */
  notBeforeMs: number;
}

const restartRank: Record<RestartPolicy, number> = { restart: 0, 'best-effort': 1, none: 2 };
const priorityRank: Record<VmHaPolicy['priority'], number> = { high: 0, medium: 1, low: 2 };

/** The restart order: protected before best-effort before none, then priority, order, id. */
export function restartOrder(a: HaVm, b: HaVm): number {
  return (
    restartRank[a.policy.restart] - restartRank[b.policy.restart] ||
    priorityRank[a.policy.priority] - priorityRank[b.policy.priority] ||
    a.policy.order - b.policy.order ||
    (a.vmId < b.vmId ? -1 : a.vmId > b.vmId ? 1 : 0)
  );
}

/**
 * The ordered plan. A VM's `delayS` runs from the restart before it, so delays add up along the
 * order; a VM that does not restart adds none (there is nothing to wait after).
 */
export function planRestarts(req: RestartRequest): RestartStep[] {
  const policy = req.policy ?? defaultPolicy;
  const failed = new Set(req.failedHostIds);
  const vms = req.vms.filter((v) => failed.has(v.hostId)).sort(restartOrder);
  // One copy of the array; a host object is replaced only when a VM lands on it.
  const hosts = req.survivors.filter((h) => !failed.has(h.id));
  const steps: RestartStep[] = [];
  let cursor = req.atMs;
  for (const vm of vms) {
    const base = { vmId: vm.vmId, fromHostId: vm.hostId, restart: vm.policy.restart };
    if (vm.policy.restart === 'none') {
      steps.push({ ...base, hostId: null, reason: 'restart policy is none', notBeforeMs: cursor });
      continue;
    }
    const notBeforeMs = cursor + vm.policy.delayS * 1000;
    const p = place(hosts, vm.demand, policy);
    if (p.hostId === null) {
      const reason =
        vm.policy.restart === 'best-effort' ? `best effort, no room left: ${p.summary}` : p.summary;
      steps.push({ ...base, hostId: null, reason, notBeforeMs });
      continue;
    }
    countPlaced(hosts, p.hostId, vm.demand);
    cursor = notBeforeMs;
    steps.push({ ...base, hostId: p.hostId, notBeforeMs });
  }
  return steps;
}

/**
 * Counts `vm` on `hostId` (its size, its groups, its new disk bytes) by replacing entries of
 * `hosts`, an array the caller owns; the host objects themselves are never changed.
 */
function countPlaced(hosts: PlacementHost[], hostId: string, vm: VmDemand): void {
  const diskPool = vm.diskBytes > 0 && vm.pools.length > 0 ? vm.pools[0] : null;
  const sharedDisk =
    diskPool !== null &&
    hosts.some((h) => h.id === hostId && h.pools.some((p) => p.name === diskPool && p.shared));
  for (let i = 0; i < hosts.length; i++) {
    const h = hosts[i];
    const chosen = h.id === hostId;
    // A shared pool is one budget: its free bytes drop on every host that sees it.
    const disk = diskPool !== null && (chosen || sharedDisk) && h.pools.some((p) => p.name === diskPool);
    if (!chosen && !disk) continue;
    const next: PlacementHost = { ...h };
    if (disk) {
      next.pools = h.pools.map((p) =>
        p.name === diskPool ? { ...p, freeBytes: Math.max(0, p.freeBytes - vm.diskBytes) } : p,
      );
    }
    if (chosen) {
      next.allocated = {
        vcpus: h.allocated.vcpus + vm.vcpus,
        memoryMiB: h.allocated.memoryMiB + vm.memoryMiB,
      };
      if (vm.groups.length > 0) {
        const groups = new Map(h.groups);
        for (const g of vm.groups) groups.set(g.name, (groups.get(g.name) ?? 0) + 1);
        next.groups = groups;
      }
    }
    hosts[i] = next;
    if (!sharedDisk) return;
  }
}

/**
 * The steps in waves: consecutive steps of one restart policy, priority and order start
 * together; a wave starts once every VM of the one before it has started (or failed to).
 */
export function waves(
  steps: readonly RestartStep[],
  policyOf: (vmId: string) => VmHaPolicy,
): RestartStep[][] {
  const out: RestartStep[][] = [];
  let key = '';
  for (const step of steps) {
    const p = policyOf(step.vmId);
    const k = `${p.restart}/${p.priority}/${p.order}`;
    if (out.length === 0 || k !== key) out.push([]);
    out[out.length - 1].push(step);
    key = k;
  }
  return out;
}

export const retryBaseMs = 5_000;
export const retryCapMs = 300_000;

/**
 * How long to wait before trying again a VM that could not be restarted, after `attempt` tries
 * that failed (1, 2, ...): 5 s, 10 s, 20 s ... up to 5 minutes. Capacity comes back when a host
 * returns or an operator frees room, which the manager also sees as an event, so the cap keeps
 * a stranded VM from waiting long after the room is there.
 */
export function retryDelayMs(attempt: number, baseMs = retryBaseMs, capMs = retryCapMs): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(capMs, baseMs * 2 ** Math.min(n - 1, 30));
}
