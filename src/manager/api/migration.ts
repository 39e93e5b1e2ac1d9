/** Moving VMs: live and quick migration between hosts, disks between pools, host evacuation. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import {
  MaintenanceRequest,
  MigrateVmRequest,
  MigrationPreview,
  MoveDiskRequest,
} from '../../wire/cluster.ts';
import { ErrorBody } from '../../wire/common.ts';
import { Host } from '../../wire/host.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { migrationDemand, planMigration } from '../migration/migrate.ts';
import { planMove } from '../migration/plan.ts';
import { explanation } from './cluster.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';

const VmRef = Type.Object({ vm: Type.String({ maxLength: 63 }) });

export function migrationRoutes(app: App, s: ApiServices): void {
  app.post(
    '/api/v1/vms/:vm/migrate',
    {
      config: { access: 'vm.admin' },
      schema: {
        summary: 'Move a running VM to another host (placement picks it unless `to` is given)',
        tags: ['vms'],
        params: VmRef,
        body: MigrateVmRequest,
        response: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
      const vm = await s.store.get(req.params.vm);
      const { params } = await planMigration(s, vm.id, req.body, await s.placer.settings.get());
      return accepted(reply, await s.tasks.submit(s.kinds.migrate, params, [`vm:${vm.id}`]));
    },
  );

  app.post(
    '/api/v1/vms/:vm/migrate/preview',
    {
      config: { access: 'vm.admin' },
      schema: {
        summary:
          'Where a migration would go and why: every host with its rating or the filter that rejected it',
        tags: ['vms'],
        params: VmRef,
        body: MigrateVmRequest,
        response: { 200: MigrationPreview, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => {
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
    },
  );

  app.post(
    '/api/v1/vms/:vm/disks/:index/move',
    {
      config: { access: 'vm.admin' },
      schema: {
        summary: 'Move a disk to another storage pool of its host (live when the VM runs)',
        tags: ['vms'],
        params: Type.Object({
          vm: Type.String({ maxLength: 63 }),
          index: Type.Integer({ minimum: 0, maximum: 15 }),
        }),
        body: MoveDiskRequest,
        response: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const vm = await s.store.get(req.params.vm);
      if (!vm.disks[req.params.index])
        throw new TernError('not_found', `VM ${vm.name} has no disk ${req.params.index}`);
      const task = await s.tasks.submit(
        s.kinds.diskMove,
        { vmId: vm.id, index: req.params.index, pool: req.body.pool },
        [`vm:${vm.id}`],
      );
      return accepted(reply, task);
    },
  );

  const HostParams = Type.Object({ host: Type.String({ maxLength: 63 }) });
  app.post(
    '/api/v1/hosts/:host/maintenance',
    {
      config: { access: 'host.write' },
      schema: {
        summary: 'Enter maintenance: live-migrate every running VM away, then take no new VMs',
        tags: ['hosts'],
        params: HostParams,
        body: MaintenanceRequest,
        response: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const host = await s.hosts.get(req.params.host);
      const task = await s.tasks.submit(
        s.kinds.maintenance,
        { hostId: host.id, stopUnmovable: req.body.stopUnmovable ?? false },
        [`host:${host.id}`],
      );
      return accepted(reply, task);
    },
  );
  app.delete(
    '/api/v1/hosts/:host/maintenance',
    {
      config: { access: 'host.write' },
      schema: {
        summary: 'Leave maintenance: the host takes VMs again',
        tags: ['hosts'],
        params: HostParams,
        response: { 200: Host, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => {
      const host = await s.hosts.get(req.params.host);
      if (host.state !== 'maintenance')
        throw new TernError('conflict', `host ${host.name} is not in maintenance`);
      return s.hosts.endMaintenance(host.id);
    },
  );
}
