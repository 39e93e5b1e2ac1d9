/** /api/v1/vms/{vm}/cdrom: a library ISO into a VM's CD-ROM drive, or out of it. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { VmRef } from '../../wire/api/vms.ts';
import { ErrorBody, Name } from '../../wire/common.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { existingPool } from '../cluster/inventory.ts';
import { imageNamed } from '../library/lookup.ts';
import { refuseCdromChange } from '../vms/cdrom.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const Force = Type.Boolean({ description: 'open the tray even if the guest has locked it (a mounted disc)' });

export function vmCdromRoutes(app: App, s: ApiServices): void {
  app.post(
    '/api/v1/vms/:vm/cdrom',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: "Insert a library ISO into a VM's CD-ROM (a stopped VM without a drive gets one)",
        tags: ['vm storage'],
        params: VmRef,
        body: Type.Object({ image: Name, force: Type.Optional(Force) }, { additionalProperties: false }),
        response: responses,
      },
    },
    async (req, reply) => {
      const row = await s.store.row(req.params.vm);
      refuseCdromChange(row, true);
      const iso = await imageNamed(s.images, req.body.image, 'iso');
      // The ISO must be where the VM's host reads it: a shared pool, or the host's own.
      const snapshot = await s.placer.snapshot();
      const needed = existingPool(snapshot, (await s.images.row(iso.name)).hostId!, iso.volume);
      const host = snapshot.hosts.find((h) => h.id === row.hostId);
      if (!host?.pools.some((p) => p.name === needed))
        throw new TernError(
          'conflict',
          `image ${iso.name} is in pool ${iso.volume.pool} of host ${iso.host}, which the host of VM ${row.name} cannot reach`,
        );
      const task = await s.tasks.submit(
        s.kinds.vmCdrom,
        { vmId: row.id, medium: iso.volume, image: iso.name, force: req.body.force ?? false },
        [`vm:${row.id}`],
      );
      return accepted(reply, task);
    },
  );

  app.delete(
    '/api/v1/vms/:vm/cdrom',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: "Eject the medium from a VM's CD-ROM",
        tags: ['vm storage'],
        params: VmRef,
        querystring: Type.Object({ force: Type.Optional(Force) }, { additionalProperties: false }),
        response: responses,
      },
    },
    async (req, reply) => {
      const row = await s.store.row(req.params.vm);
      refuseCdromChange(row, false);
      const task = await s.tasks.submit(
        s.kinds.vmCdrom,
        { vmId: row.id, medium: null, image: null, force: req.query.force ?? false },
        [`vm:${row.id}`],
      );
      return accepted(reply, task);
    },
  );
}
