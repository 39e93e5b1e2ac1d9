/** /api/v1/image-pools: golden images in versions and the VMs that boot from them. */
import { TernError } from '../../errors.ts';
import { imagePoolRoutes as routes } from '../../wire/api/image-pools.ts';
import { find, promote, refuseDelete, rollback } from '../imagepools/versions.ts';
import { fitsPool, formatBytes } from '../placement/filters.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function imagePoolRoutes(app: App, s: ApiServices): void {
  const lock = (pool: string) => [`imagepool:${pool}`];

  serve(app, routes.list, 'library.read', async () => ({ items: await s.imagePools.list() }));
  serve(app, routes.show, 'library.read', async (req) =>
    s.imagePools.toWire(await s.imagePools.row(req.params.pool)),
  );

  serve(app, routes.create, 'library.write', async (req, reply) => {
    const b = req.body;
    if (await s.imagePools.has(b.name)) throw new TernError('conflict', `image pool ${b.name} exists`);
    const template = await s.templates.get(b.template);
    // UEFI VMs run only where OVMF is.
    const host =
      template.firmware === 'uefi'
        ? await s.hosts.pickHost((h) => h.facts?.uefi === true, 'with UEFI firmware (OVMF)')
        : await s.hosts.pickHost();
    const pool = host.facts?.pools[0];
    if (!pool) throw new TernError('unavailable', `host ${host.name} reports no storage pool`);
    const diskPool = pool.name;
    // The golden image is a full copy of the template's disk; the VMs' write caches are thin
    // (and discarded at boot unless persistent): they count nothing, which is the point of a pool.
    const { storageOvercommit } = await s.placer.settings.get();
    if (!fitsPool(pool.freeBytes, template.diskSizeBytes, storageOvercommit))
      throw new TernError(
        'no_capacity',
        `pool ${diskPool} on host ${host.name} cannot take the golden image (${formatBytes(template.diskSizeBytes)}): ${formatBytes(pool.freeBytes)} free × storageOvercommit ${storageOvercommit}`,
      );
    const params = {
      name: b.name,
      template: b.template,
      size: b.size,
      cache: b.cache ?? 'non-persistent',
      maxUnavailablePercent: b.maxUnavailablePercent ?? 20,
      chainLimit: b.chainLimit ?? 5,
      start: b.start ?? false,
      hostId: host.id,
      diskPool,
    };
    return accepted(reply, await s.tasks.submit(s.kinds.poolCreate, params, lock(b.name)));
  });

  serve(app, routes.createVersion, 'library.write', async (req, reply) => {
    await s.imagePools.row(req.params.pool);
    return accepted(
      reply,
      await s.tasks.submit(s.kinds.poolVersionCreate, { pool: req.params.pool }, lock(req.params.pool)),
    );
  });

  serve(app, routes.testVersion, 'library.write', async (req, reply) => {
    const p = { pool: req.params.pool, number: req.params.number };
    // Refused before a task when the pool or version does not exist (the task checks again).
    find(await s.imagePools.state(p.pool), p.number);
    return accepted(reply, await s.tasks.submit(s.kinds.poolVersionTest, p, lock(p.pool)));
  });

  serve(app, routes.promoteVersion, 'library.write', async (req, reply) => {
    const next = promote(await s.imagePools.state(req.params.pool), req.params.number);
    const p = { pool: req.params.pool, target: next.production, previous: next.previous };
    return accepted(reply, await s.tasks.submit(s.kinds.poolRoll, p, lock(p.pool)));
  });

  serve(app, routes.rollback, 'library.write', async (req, reply) => {
    const next = rollback(await s.imagePools.state(req.params.pool));
    const p = { pool: req.params.pool, target: next.production, previous: next.previous };
    return accepted(reply, await s.tasks.submit(s.kinds.poolRoll, p, lock(p.pool)));
  });

  serve(app, routes.removeVersion, 'library.write', async (req, reply) => {
    const p = { pool: req.params.pool, number: req.params.number };
    // Refused before a task when nothing could be deleted; the task checks again under its lock.
    refuseDelete(await s.imagePools.state(p.pool), p.number, await s.imagePools.members(p.pool));
    return accepted(reply, await s.tasks.submit(s.kinds.poolVersionDelete, p, lock(p.pool)));
  });
}
