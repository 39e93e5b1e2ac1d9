/** /api/v1/vms/{vm}/cdrom: a library ISO into a VM's CD-ROM drive, or out of it. */
import { TernError } from '../../errors.ts';
import { vmCdromRoutes as routes } from '../../wire/api/vm-cdrom.ts';
import { existingPool } from '../cluster/inventory.ts';
import { imageNamed } from '../library/lookup.ts';
import { refuseCdromChange } from '../vms/cdrom.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function vmCdromRoutes(app: App, s: ApiServices): void {
  serve(app, routes.insert, 'vm.write', async (req, reply) => {
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
  });

  serve(app, routes.eject, 'vm.write', async (req, reply) => {
    const row = await s.store.row(req.params.vm);
    refuseCdromChange(row, false);
    const task = await s.tasks.submit(
      s.kinds.vmCdrom,
      { vmId: row.id, medium: null, image: null, force: req.query.force ?? false },
      [`vm:${row.id}`],
    );
    return accepted(reply, task);
  });
}
