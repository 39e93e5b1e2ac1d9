/** /api/v1/cluster: the cluster as a whole — its CPU baseline, settings, capacity, placement. */
import { clusterRoutes as routes } from '../../wire/api/cluster.ts';
import type { VmHaPolicy } from '../../wire/ha-policy.ts';
import { createGroup, deleteGroup, groupsNamed, listGroups } from '../cluster/groups.ts';
import { baselineOf, existingPool } from '../cluster/inventory.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { isProtected } from '../ha/assignment.ts';
import { imageNamed, imagePools, templateNamed } from '../library/lookup.ts';
import { capacity } from '../placement/capacity.ts';
import type { Placement } from '../placement/model.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

/** A placement question about a new VM (what `tern vm create --explain` asks). */

export function explanation(p: Placement, name: (id: string | null) => string | null) {
  return {
    host: name(p.hostId),
    summary: p.summary,
    verdicts: p.verdicts.map((v) => ({
      host: v.host,
      eligible: v.eligible,
      ...(v.filter ? { filter: v.filter } : {}),
      ...(v.reason ? { reason: v.reason } : {}),
      ...(v.rating !== undefined ? { rating: Math.round(v.rating * 1000) / 1000 } : {}),
    })),
  };
}

export function clusterRoutes(app: App, s: ApiServices): void {
  serve(app, routes.show, 'cluster.read', async () => {
    const snapshot = await s.placer.snapshot();
    const count = (state: string) => snapshot.hosts.filter((h) => h.state === state).length;
    const up = snapshot.hosts.filter((h) => h.state !== 'offline');
    return {
      hosts: { online: count('online'), offline: count('offline'), maintenance: count('maintenance') },
      cpuBaseline: baselineOf(snapshot),
      capacity: {
        cores: up.reduce((n, h) => n + h.cores, 0),
        memoryMiB: up.reduce((n, h) => n + h.memoryMiB, 0),
        allocatedVcpus: up.reduce((n, h) => n + h.allocated.vcpus, 0),
        allocatedMemoryMiB: up.reduce((n, h) => n + h.allocated.memoryMiB, 0),
      },
    };
  });

  serve(app, routes.settings, 'cluster.read', async () => s.placer.settings.get());
  serve(app, routes.updateSettings, 'cluster.write', async (req) => s.placer.settings.update(req.body));

  serve(app, routes.capacity, 'cluster.read', async (req) => {
    const snapshot = await s.placer.snapshot();
    // Every VM that holds a host's resources takes room; the ones with a restart policy
    // must also find room again after the failures.
    const vms = await s.db.selectFrom('vms').select(['hostId', 'spec', 'state', 'haPolicy']).execute();
    const load = vms
      .filter(
        (v) => v.hostId && ['running', 'paused', 'unknown', 'unreachable', 'creating'].includes(v.state),
      )
      .map((v) => {
        const spec = vmSpecOf(v);
        const policy = v.haPolicy ? (JSON.parse(v.haPolicy) as VmHaPolicy) : null;
        return {
          hostId: v.hostId!,
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
          protected: isProtected(policy),
        };
      });
    // Allocations come from `load`; the snapshot's would count them twice.
    const hosts = snapshot.hosts.map((h) => ({ ...h, allocated: { vcpus: 0, memoryMiB: 0 } }));
    return capacity(
      hosts,
      load,
      { ...req.body, ...(req.body.pool ? { pool: req.body.pool } : {}) },
      await s.placer.settings.policy(),
    );
  });

  serve(app, routes.placement, 'cluster.read', async (req) => {
    const b = req.body;
    const snapshot = await s.placer.snapshot();
    const template = b.template ? await templateNamed(s, b.template) : null;
    const templateHost = template ? await s.templates.hostOf(template.name) : null;
    const image = b.image ? await imageNamed(s.images, b.image, 'disk') : null;
    const iso = b.iso ? await imageNamed(s.images, b.iso, 'iso') : null;
    const pool = b.pool ?? template?.disk.pool ?? image?.volume.pool ?? 'local';
    const p = await s.placer.explain(
      {
        vcpus: b.vcpus,
        memoryMiB: b.memoryMiB,
        diskBytes: b.diskBytes ?? 0,
        pools: [
          pool,
          ...(template && templateHost ? [existingPool(snapshot, templateHost, template.disk)] : []),
          ...(await imagePools(s.images, snapshot, [image, iso])),
        ],
        cpu: b.cpuMode === 'host' ? { mode: 'host' } : { mode: 'compat', model: baselineOf(snapshot).model },
        groups: await groupsNamed(s.db, b.groups ?? []),
        uefi: (b.firmware ?? template?.firmware) === 'uefi',
        networks: await Promise.all((b.networks ?? []).map(async (n) => (await s.networks.row(n)).id)),
      },
      snapshot,
    );
    return explanation(p, (id) => snapshot.hosts.find((h) => h.id === id)?.name ?? null);
  });

  serve(app, routes.placementGroups, 'cluster.read', async () => ({ items: await listGroups(s.db) }));
  serve(app, routes.createPlacementGroup, 'cluster.write', async (req, reply) =>
    reply.code(201).send(await createGroup(s.db, req.body.name, req.body.kind)),
  );
  serve(app, routes.removePlacementGroup, 'cluster.write', async (req, reply) => {
    await deleteGroup(s.db, req.params.name);
    return reply.code(204).send(null);
  });
}
