/** /api/v1/backup/datastores/{datastore}/sync: an offsite copy of a datastore's backups (backup.sync). */
import { backupSyncRoutes as routes } from '../../wire/api/backup-sync.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function backupSyncRoutes(app: App, s: ApiServices): void {
  serve(app, routes.sync, 'backup.write', async (req, reply) => {
    const [source, target] = [
      await s.datastores.row(req.params.datastore),
      await s.datastores.row(req.body.target),
    ];
    const vm = req.body.vm ? ((await s.store.row(req.body.vm).catch(() => null))?.id ?? req.body.vm) : null;
    const params = {
      sourceId: source.id,
      targetId: target.id,
      vmIds: vm ? [vm] : null,
      encryptedOnly: req.body.encryptedOnly ?? false,
    };
    // One sync into a datastore at a time: two would copy the same backups side by side.
    return accepted(reply, await s.tasks.submit(s.kinds.backupSync, params, [`datastore-sync:${target.id}`]));
  });
}
