/** /api/v1/backup/jobs: backup jobs and running them now; /api/v1/backups/…/prove: proving a backup by booting it. */
import { backupJobRoutes as routes } from '../../wire/api/backup-jobs.ts';
import { jobObject } from '../backup/job-run.ts';
import { proveObjects } from '../backup/prove.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function backupJobRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'backup.read', async () => ({ items: await s.backupJobs.list() }));

  serve(app, routes.create, 'backup.write', async (req, reply) =>
    reply.status(201).send(await s.backupJobs.create(req.body)),
  );

  serve(app, routes.show, 'backup.read', async (req) => s.backupJobs.show(req.params.job));

  serve(app, routes.update, 'backup.write', async (req) => s.backupJobs.update(req.params.job, req.body));

  serve(app, routes.remove, 'backup.write', async (req, reply) => {
    await s.backupJobs.remove(req.params.job);
    return reply.code(204).send(null);
  });

  serve(app, routes.run, 'backup.write', async (req, reply) => {
    const job = await s.backupJobs.row(req.params.job);
    const task = await s.tasks.submit(s.kinds.backupJob, { jobId: job.id, scheduled: false }, [
      jobObject(job.id),
    ]);
    await s.backupJobs.recordStart(job.id, task.id);
    return accepted(reply, task);
  });

  serve(app, routes.prove, 'backup.write', async (req, reply) => {
    const ds = req.query.datastore ? await s.datastores.row(req.query.datastore) : null;
    const backup = await s.backups.get(req.params.vm, req.params.backup, ds?.id);
    const params = {
      datastoreId: backup.datastoreId,
      vmId: backup.vmId,
      backupId: backup.id,
      host: req.body.host ?? null,
      pool: req.body.pool ?? null,
      timeoutS: req.body.timeoutS ?? 300,
    };
    return accepted(reply, await s.tasks.submit(s.kinds.backupProve, params, proveObjects(params)));
  });
}
