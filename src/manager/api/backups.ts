/** /api/v1/backup and /api/v1/backups: datastores, and VMs' backups in them (manager/backup/). */

import { TernError } from '../../errors.ts';
import { backupRoutes as routes } from '../../wire/api/backups.ts';
import { principalOf } from '../auth/principal.ts';
import { backupToWire } from '../backup/inventory.ts';
import { backupObject, nextBackupId } from '../backup/names.ts';
import { submitRestore } from '../backup/restore-vm.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function backupRoutes(app: App, s: ApiServices): void {
  serve(app, routes.datastores, 'backup.read', async () => ({ items: await s.datastores.list() }));
  serve(app, routes.createDatastore, 'backup.write', async (req, reply) =>
    reply.status(201).send(await s.datastores.create(req.body)),
  );
  serve(app, routes.showDatastore, 'backup.read', async (req) => s.datastores.show(req.params.datastore));
  serve(app, routes.deleteDatastore, 'backup.write', async (req, reply) => {
    await s.datastores.remove(req.params.datastore);
    return reply.code(204).send(null);
  });

  /** The names of datastores by id, for the backups' wire form. */
  const names = async () => new Map((await s.datastores.list()).map((d) => [d.id, d.name]));

  serve(app, routes.list, 'backup.read', async (req) => {
    const ds = req.query.datastore ? await s.datastores.row(req.query.datastore) : null;
    const vm = req.query.vm
      ? ((await s.store.row(req.query.vm).catch(() => null))?.id ?? req.query.vm)
      : undefined;
    const rows = await s.backups.list({ vm, datastoreId: ds?.id });
    const byId = await names();
    return { items: rows.map((r) => backupToWire(r, byId.get(r.datastoreId) ?? r.datastoreId)) };
  });

  serve(app, routes.show, 'backup.read', async (req) => {
    const r = await backupOf(s, req.params, req.query.datastore);
    return backupToWire(r, (await s.datastores.row(r.datastoreId)).name);
  });

  serve(app, routes.run, 'backup.write', async (req, reply) => {
    const vm = await s.store.row(req.body.vm);
    const ds = await s.datastores.row(req.body.datastore);
    const latest = await s.backups.latest(ds.id, vm.id);
    const params = {
      vmId: vm.id,
      datastoreId: ds.id,
      backupId: nextBackupId(new Date(), latest?.id ?? null),
      freeze: req.body.freeze ?? true,
      bandwidth: req.body.bandwidth ?? 0,
      jobId: null,
    };
    return accepted(reply, await s.tasks.submit(s.kinds.backupRun, params, [`vm:${vm.id}`]));
  });

  serve(app, routes.restore, 'backup.write', async (req, reply) => {
    const r = await backupOf(s, req.params, req.query.datastore);
    return accepted(reply, await submitRestore(s, r, req.body, principalOf(req).userId));
  });

  serve(app, routes.verify, 'backup.write', async (req, reply) => {
    const ds = await s.datastores.row(req.params.datastore);
    const vm = req.body.vm
      ? ((await s.store.row(req.body.vm).catch(() => null))?.id ?? req.body.vm)
      : undefined;
    const days = req.body.olderThanDays;
    const due = days === undefined ? null : new Date(Date.now() - days * 86_400_000).toISOString();
    const rows = (await s.backups.list({ vm, datastoreId: ds.id })).filter(
      (b) => due === null || b.verifiedAt === null || b.verifiedAt < due,
    );
    if (rows.length === 0) throw new TernError('not_found', `no backup in ${ds.name} to verify`);
    const params = { datastoreId: ds.id, backups: rows.map((b) => ({ vmId: b.vmId, id: b.id })) };
    return accepted(reply, await s.tasks.submit(s.kinds.backupVerify, params, [`datastore:${ds.id}:verify`]));
  });

  serve(app, routes.gc, 'backup.write', async (req, reply) => {
    const ds = await s.datastores.row(req.params.datastore);
    return accepted(
      reply,
      await s.tasks.submit(s.kinds.backupGc, { datastoreId: ds.id }, [`datastore:${ds.id}:gc`]),
    );
  });

  serve(app, routes.prune, 'backup.write', async (req, reply) => {
    const r = await backupOf(s, req.params, req.query.datastore);
    const params = { datastoreId: r.datastoreId, vmId: r.vmId, backupId: r.id };
    return accepted(reply, await s.tasks.submit(s.kinds.backupPrune, params, [backupObject(params)]));
  });
}

/** A backup by the VM's name or id (the VM may be gone) and its id. */
async function backupOf(s: ApiServices, p: { vm: string; backup: string }, datastore?: string) {
  const ds = datastore ? await s.datastores.row(datastore) : null;
  const vm = await s.store.row(p.vm).catch(() => null);
  return s.backups.get(p.vm, p.backup, ds?.id, vm?.id);
}
