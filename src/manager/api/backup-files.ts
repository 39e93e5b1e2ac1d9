/**
 * /api/v1/backups/{vm}/{backup}/files: files out of a backup, read by a host that reaches its
 * datastore and streamed through. Audited with the path read, like reads of a guest's files.
 */
import { Readable } from 'node:stream';
import { backupFileRoutes as routes } from '../../wire/api/backup-files.ts';
import type { BackupFilesRequest } from '../../wire/backup.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function backupFileRoutes(app: App, s: ApiServices): void {
  /** The request a host needs, and the agent of a host that reaches the datastore. */
  const ask = async (
    p: { vm: string; backup: string },
    datastore: string | undefined,
    body: { disk?: string; partition?: number; path: string },
  ) => {
    const ds = datastore ? await s.datastores.row(datastore) : null;
    const vm = (await s.store.row(p.vm).catch(() => null))?.id ?? p.vm;
    const backup = await s.backups.get(vm, p.backup, ds?.id);
    const row = await s.datastores.row(backup.datastoreId);
    const req: BackupFilesRequest = {
      datastore: await s.datastores.access(row),
      group: backup.vmId,
      id: backup.id,
      disk: body.disk ?? 'disk0',
      path: body.path,
      ...(body.partition ? { partition: body.partition } : {}),
    };
    return { req, agent: (await s.datastores.agentFor(row)).agent };
  };

  serve(app, routes.listFiles, 'backup.write', async (req) => {
    req.auditDetail = `list: ${JSON.stringify(req.body.path)}`.slice(0, 2000);
    const { req: files, agent } = await ask(req.params, req.query.datastore, req.body);
    return agent.backup.listBackupFiles(files);
  });

  serve(app, routes.readFile, 'backup.write', async (req, reply) => {
    req.auditDetail = `read: ${JSON.stringify(req.body.path)}`.slice(0, 2000);
    const { req: files, agent } = await ask(req.params, req.query.datastore, req.body);
    const { bytes, body } = await agent.backup.readBackupFile(files);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(bytes))
      .send(Readable.fromWeb(body as never) as never);
  });
}
