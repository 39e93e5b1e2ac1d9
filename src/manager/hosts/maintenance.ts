/**
 * Maintenance mode. Entering it first stops the host from taking new VMs, then plans where every
 * running VM goes (placement, each planned move counted against its target before the next is
 * chosen) and only if all can move — or the caller accepts stopping the rest — live-migrates them
 * one by one. VMs that are not running stay registered on the host; they take nothing from it.
 */
import { TernError } from '../../errors.ts';
import { groupsOfVm } from '../cluster/inventory.ts';
import { type MigrateParams, type MigrationDeps, migrateVm, migrationDemand } from '../migration/migrate.ts';
import { planMove } from '../migration/plan.ts';
import { place } from '../placement/place.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { shutdownVm } from '../vms/power.ts';

export interface MaintenanceParams {
  hostId: string;
  stopUnmovable: boolean;
}

export interface EvacuationPlan {
  moves: { vmId: string; vm: string; to: string; toName: string }[];
  unmovable: { vmId: string; vm: string; reason: string }[];
}

/** Where each running VM of the host would go; pure apart from reading the inventory. */
export async function planEvacuation(deps: MigrationDeps, hostId: string): Promise<EvacuationPlan> {
  const vms = (await deps.store.list({ limit: 100_000 })).items.filter(
    (v) => v.host !== null && (v.state === 'running' || v.state === 'paused'),
  );
  const host = await deps.hosts.get(hostId);
  const plan: EvacuationPlan = { moves: [], unmovable: [] };
  const policy = await deps.placer.settings.policy();
  const snapshot = await deps.placer.snapshot();
  const chosen = new Map<string, { vcpus: number; memoryMiB: number }>();
  for (const vm of vms.filter((v) => v.host === host.name)) {
    if (vm.state !== 'running') {
      plan.unmovable.push({
        vmId: vm.id,
        vm: vm.name,
        reason: `it is ${vm.state}; only running VMs migrate`,
      });
      continue;
    }
    const { demand, spec } = await migrationDemand(deps, vm.id, { mode: 'live' });
    // Earlier moves of this evacuation take room on their targets.
    const hosts = snapshot.hosts.map((h) => {
      const extra = chosen.get(h.id);
      return extra
        ? {
            ...h,
            allocated: {
              vcpus: h.allocated.vcpus + extra.vcpus,
              memoryMiB: h.allocated.memoryMiB + extra.memoryMiB,
            },
          }
        : h;
    });
    const p = place(hosts, { ...demand, groups: await groupsOfVm(deps.db, vm.id) }, policy, {
      explain: true,
    });
    if (!p.hostId) {
      plan.unmovable.push({ vmId: vm.id, vm: vm.name, reason: p.summary });
      continue;
    }
    const move = planMove(spec, snapshot.facts.get(hostId)!, snapshot.facts.get(p.hostId)!, { mode: 'live' });
    if (!move.ok) {
      plan.unmovable.push({ vmId: vm.id, vm: vm.name, reason: move.reason });
      continue;
    }
    const c = chosen.get(p.hostId) ?? { vcpus: 0, memoryMiB: 0 };
    chosen.set(p.hostId, { vcpus: c.vcpus + spec.vcpus, memoryMiB: c.memoryMiB + spec.memoryMiB });
    const target = snapshot.hosts.find((h) => h.id === p.hostId)!;
    plan.moves.push({ vmId: vm.id, vm: vm.name, to: p.hostId, toName: target.name });
  }
  return plan;
}

export function maintenanceTask(deps: MigrationDeps): TaskKind<MaintenanceParams> {
  return {
    kind: 'host.maintenance',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const host = await deps.hosts.get(p.hostId);
      const previous = host.state;
      await deps.hosts.setState(p.hostId, 'maintenance');
      await ctx.step('planning the evacuation', 2);
      const plan = await planEvacuation(deps, p.hostId);
      for (const u of plan.unmovable) await ctx.log(`cannot move ${u.vm}: ${u.reason}`);
      if (plan.unmovable.length > 0 && !p.stopUnmovable) {
        if (previous !== 'maintenance') await deps.hosts.setState(p.hostId, previous);
        throw new TernError(
          'conflict',
          `${plan.unmovable.length} VM(s) cannot leave host ${host.name}: ${plan.unmovable
            .map((u) => `${u.vm} (${u.reason})`)
            .join('; ')}; nothing was moved (use --stop-unmovable to stop them instead)`,
          { unmovable: plan.unmovable },
        );
      }
      const settings = await deps.placer.settings.get();
      const moved: string[] = [];
      for (const [i, m] of plan.moves.entries()) {
        ctx.throwIfCancelled();
        await ctx.step(
          `migrating ${m.vm} to ${m.toName} (${i + 1} of ${plan.moves.length})`,
          5 + (i / plan.moves.length) * 90,
        );
        const params: MigrateParams = {
          vmId: m.vmId,
          from: p.hostId,
          to: m.to,
          mode: 'live',
          downtimeMs: settings.migrationDowntimeMs,
          bandwidthMiBps: settings.migrationBandwidthMiBps,
          timeoutS: settings.migrationTimeoutS,
        };
        await migrateVm(deps, ctx, params);
        moved.push(m.vm);
      }
      const stopped: string[] = [];
      for (const u of plan.unmovable) {
        const vm = await deps.store.get(u.vmId);
        if (vm.state !== 'running' && vm.state !== 'paused') continue;
        await ctx.step(`stopping ${u.vm}`, 96);
        await shutdownVm(deps, ctx, u.vmId, 60, true);
        stopped.push(u.vm);
      }
      return { host: host.name, state: 'maintenance', moved, stopped };
    },
    async cleanup(ctx, p) {
      // A failed evacuation leaves the host in maintenance: VMs may have left already, and new
      // ones should not land on a host being emptied. `maintenance off` brings it back.
      await ctx.log('the host stays in maintenance; VMs already moved stay where they are');
      void p;
    },
  };
}
