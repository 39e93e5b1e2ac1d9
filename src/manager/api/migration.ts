/** Moving VMs: live and quick migration between hosts, disks between pools. */
import { TernError } from '../../errors.ts';
import { migrationRoutes as routes } from '../../wire/api/migration.ts';
import { migrationDemand, planMigration } from '../migration/migrate.ts';
import { planMove } from '../migration/plan.ts';
import { explanation } from './cluster.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function migrationRoutes(app: App, s: ApiServices): void {
  serve(app, routes.migrate, 'vm.admin', async (req, reply) => {
    const vm = await s.store.get(req.params.vm);
    const { params } = await planMigration(s, vm.id, req.body, await s.placer.settings.get());
    return accepted(reply, await s.tasks.submit(s.kinds.migrate, params, [`vm:${vm.id}`]));
  });

  serve(app, routes.migratePreview, 'vm.admin', async (req) => {
    const vm = await s.store.get(req.params.vm);
    const mode = req.body.mode ?? 'live';
    const { demand, spec, from, snapshot } = await migrationDemand(s, vm.id, {
      mode,
      targetPool: req.body.targetPool,
    });
    const placement = await s.placer.explain(demand, snapshot);
    const to = req.body.to ? (await s.hosts.get(req.body.to)).id : placement.hostId;
    const move = to
      ? planMove(spec, snapshot.facts.get(from)!, snapshot.facts.get(to)!, {
          mode,
          targetPool: req.body.targetPool,
        })
      : null;
    const name = (id: string | null) => snapshot.hosts.find((h) => h.id === id)?.name ?? null;
    return {
      placement: { ...explanation(placement, name), host: name(to) },
      storage: move?.ok ? move.storage : null,
      mirrored: move?.ok ? move.mirrored.map((m) => `${m.from.pool}:${m.from.path} → ${m.to.pool}`) : [],
      refused: move && !move.ok ? move.reason : null,
    };
  });

  serve(app, routes.moveDisk, 'vm.admin', async (req, reply) => {
    const vm = await s.store.get(req.params.vm);
    if (!vm.disks[req.params.index])
      throw new TernError('not_found', `VM ${vm.name} has no disk ${req.params.index}`);
    const task = await s.tasks.submit(
      s.kinds.diskMove,
      { vmId: vm.id, index: req.params.index, pool: req.body.pool },
      [`vm:${vm.id}`],
    );
    return accepted(reply, task);
  });
}
