/**
 * Maintenance mode. Entering it first stops the host from taking new VMs, then plans where every
 * running VM goes (evacuation-plan.ts, over one read of the inventory) and only if all can move —
 * or the caller accepts stopping the rest — live-migrates them one by one. VMs that are not
 * running stay registered on the host; they take nothing from it.
 */
import { TernError } from '../../errors.ts';
import { groupsOfVms } from '../cluster/inventory.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { shutdownVm } from '../vms/power.ts';
import { type EvacuationInput, planEvacuation } from './evacuation-plan.ts';
import { type MigrateParams, type MigrationDeps, migrateVm } from './migrate.ts';

export interface MaintenanceParams {
  hostId: string;
  stopUnmovable: boolean;
}

/** What the planner decides over: the host's running and paused VMs, the cluster, the policy. */
async function readEvacuation(deps: MigrationDeps, hostId: string): Promise<EvacuationInput> {
  const rows = await deps.db
    .selectFrom('vms')
    .selectAll()
    .where('hostId', '=', hostId)
    .where('state', 'in', ['running', 'paused'])
    .orderBy('name')
    .execute();
  const groups = await groupsOfVms(
    deps.db,
    rows.map((r) => r.id),
  );
  const policy = await deps.placer.settings.policy();
  const snapshot = await deps.placer.snapshot();
  const running = rows.find((r) => r.state === 'running');
  if (running && !snapshot.facts.has(hostId))
    throw new TernError('unavailable', `the host of VM ${running.name} has not reported its facts`);
  const vms = rows.map((r) => ({
    ...r,
    hostId,
    spec: vmSpecOf(r),
    groups: groups.get(r.id) ?? [],
  }));
  return { hostId, vms, snapshot, policy };
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
      const plan = planEvacuation(await readEvacuation(deps, p.hostId));
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
