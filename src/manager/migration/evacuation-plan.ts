/**
 * Where every VM of a host going into maintenance goes: each running VM is placed in turn, each
 * planned move counted against its target before the next is chosen, and checked as a move
 * (planMove); what cannot move says why. Pure: evacuate.ts reads the inventory once and carries
 * the plan out.
 */
import type { VmSpec } from '../../wire/vm.ts';
import type { ClusterSnapshot } from '../cluster/inventory.ts';
import type { PlacementHost, PlacementPolicy, VmGroup } from '../placement/model.ts';
import { place } from '../placement/place.ts';
import { type MovingVm, moveDemand } from './demand.ts';
import { planMove } from './plan.ts';

/** A VM on the host being emptied, as the inventory holds it. */
export interface EvacuatingVm extends MovingVm {
  id: string;
  name: string;
  state: string;
  spec: VmSpec;
  groups: readonly VmGroup[];
}

export interface EvacuationInput {
  hostId: string;
  /** The host's VMs that run or are paused, in the order they are to move. */
  vms: readonly EvacuatingVm[];
  snapshot: ClusterSnapshot;
  policy: PlacementPolicy;
}

export interface EvacuationPlan {
  moves: { vmId: string; vm: string; to: string; toName: string }[];
  unmovable: { vmId: string; vm: string; reason: string }[];
}

export function planEvacuation({ hostId, vms, snapshot, policy }: EvacuationInput): EvacuationPlan {
  const plan: EvacuationPlan = { moves: [], unmovable: [] };
  const source = snapshot.facts.get(hostId);
  // Room taken on each target by the moves planned before.
  const chosen = new Map<string, { vcpus: number; memoryMiB: number }>();
  for (const vm of vms) {
    const unmovable = (reason: string) => plan.unmovable.push({ vmId: vm.id, vm: vm.name, reason });
    if (vm.state !== 'running') {
      unmovable(`it is ${vm.state}; only running VMs migrate`);
      continue;
    }
    const demand = moveDemand(vm, vm.spec, snapshot, vm.groups);
    if (!source || !demand) {
      unmovable('its host has not reported its facts');
      continue;
    }
    const p = place(withPlanned(snapshot.hosts, chosen), demand, policy, { explain: true });
    if (!p.hostId) {
      unmovable(p.summary);
      continue;
    }
    const move = planMove(vm.spec, source, snapshot.facts.get(p.hostId)!, { mode: 'live' });
    if (!move.ok) {
      unmovable(move.reason);
      continue;
    }
    const c = chosen.get(p.hostId) ?? { vcpus: 0, memoryMiB: 0 };
    chosen.set(p.hostId, { vcpus: c.vcpus + vm.spec.vcpus, memoryMiB: c.memoryMiB + vm.spec.memoryMiB });
    const target = snapshot.hosts.find((h) => h.id === p.hostId)!;
    plan.moves.push({ vmId: vm.id, vm: vm.name, to: p.hostId, toName: target.name });
  }
  return plan;
}

function withPlanned(
  hosts: readonly PlacementHost[],
  chosen: ReadonlyMap<string, { vcpus: number; memoryMiB: number }>,
): PlacementHost[] {
  return hosts.map((h) => {
    const extra = chosen.get(h.id);
    if (!extra) return h;
    const { vcpus, memoryMiB } = h.allocated;
    return { ...h, allocated: { vcpus: vcpus + extra.vcpus, memoryMiB: memoryMiB + extra.memoryMiB } };
  });
}
