/** /api/v1/image-pools: golden images in versions and the VMs that boot from them. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody } from '../../wire/common.ts';
import { CreateImagePoolRequest, ImagePool } from '../../wire/image-pool.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { find, promote, refuseDelete, rollback } from '../imagepools/versions.ts';
import { fitsPool, formatBytes } from '../placement/filters.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const PoolRef = Type.Object({ pool: Type.String({ minLength: 1, maxLength: 41 }) });
const VersionRef = Type.Object({ pool: PoolRef.properties.pool, number: Type.Integer({ minimum: 1 }) });

export function imagePoolRoutes(app: App, s: ApiServices): void {
  const lock = (pool: string) => [`imagepool:${pool}`];

  app.get(
    '/api/v1/image-pools',
    {
      config: { access: 'library.read' },
      schema: {
        summary: 'List image pools',
        tags: ['image pools'],
        response: { 200: Type.Object({ items: Type.Array(ImagePool) }) },
      },
    },
    async () => ({ items: await s.imagePools.list() }),
  );
  app.get(
    '/api/v1/image-pools/:pool',
    {
      config: { access: 'library.read' },
      schema: {
        summary: 'Show an image pool',
        tags: ['image pools'],
        params: PoolRef,
        response: { 200: ImagePool, 404: ErrorBody },
      },
    },
    async (req) => s.imagePools.toWire(await s.imagePools.row(req.params.pool)),
  );

  app.post(
    '/api/v1/image-pools',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Make a pool: version 1 of the golden image from a template, and its VMs',
        tags: ['image pools'],
        body: CreateImagePoolRequest,
        response: responses,
      },
    },
    async (req, reply) => {
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
    },
  );

  app.post(
    '/api/v1/image-pools/:pool/versions',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Open a maintenance version on top of production, with the one VM that may write to it',
        tags: ['image pools'],
        params: PoolRef,
        response: responses,
      },
    },
    async (req, reply) => {
      await s.imagePools.row(req.params.pool);
      return accepted(
        reply,
        await s.tasks.submit(s.kinds.poolVersionCreate, { pool: req.params.pool }, lock(req.params.pool)),
      );
    },
  );

  app.post(
    '/api/v1/image-pools/:pool/versions/:number/test',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Seal a maintenance version for testing (its maintenance VM must be shut down)',
        tags: ['image pools'],
        params: VersionRef,
        response: responses,
      },
    },
    async (req, reply) => {
      const p = { pool: req.params.pool, number: req.params.number };
      // Refused before a task when the pool or version does not exist (the task checks again).
      find(await s.imagePools.state(p.pool), p.number);
      return accepted(reply, await s.tasks.submit(s.kinds.poolVersionTest, p, lock(p.pool)));
    },
  );

  app.post(
    '/api/v1/image-pools/:pool/versions/:number/promote',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Make a tested version production: the pool rolls onto it by rolling reboot',
        tags: ['image pools'],
        params: VersionRef,
        response: responses,
      },
    },
    async (req, reply) => {
      const next = promote(await s.imagePools.state(req.params.pool), req.params.number);
      const p = { pool: req.params.pool, target: next.production, previous: next.previous };
      return accepted(reply, await s.tasks.submit(s.kinds.poolRoll, p, lock(p.pool)));
    },
  );

  app.post(
    '/api/v1/image-pools/:pool/rollback',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Return the pool to its previous production version by rolling reboot',
        tags: ['image pools'],
        params: PoolRef,
        response: responses,
      },
    },
    async (req, reply) => {
      const next = rollback(await s.imagePools.state(req.params.pool));
      const p = { pool: req.params.pool, target: next.production, previous: next.previous };
      return accepted(reply, await s.tasks.submit(s.kinds.poolRoll, p, lock(p.pool)));
    },
  );

  app.delete(
    '/api/v1/image-pools/:pool/versions/:number',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Delete a version nothing uses',
        tags: ['image pools'],
        params: VersionRef,
        response: responses,
      },
    },
    async (req, reply) => {
      const p = { pool: req.params.pool, number: req.params.number };
      // Refused before a task when nothing could be deleted; the task checks again under its lock.
      refuseDelete(await s.imagePools.state(p.pool), p.number, await s.imagePools.members(p.pool));
      return accepted(reply, await s.tasks.submit(s.kinds.poolVersionDelete, p, lock(p.pool)));
    },
  );
}
