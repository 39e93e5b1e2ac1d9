/**
 * The agent route that backs a VM up into a datastore (src/agent/backup/): the host takes a
 * point-in-time view of the VM's disks, reads what changed (or everything, saying why) and
 * answers progress and log lines, then the result. Part of `agentRoutes`.
 */
import { IdParams, tags } from './agent-route-parts.ts';
import { BackupVmReport, BackupVmRequest } from './backup.ts';
import { route } from './route.ts';

export const agentBackupRoutes = {
  backupVm: route({
    summary:
      'Back a VM (running or stopped) up into a datastore: progress and log lines, then `done` with the result or `error`',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/backup',
    params: IdParams,
    body: BackupVmRequest,
    reply: {},
    rawReply: {
      contentType: 'application/x-ndjson',
      description: 'newline-delimited JSON, one line each as `lines` declares',
    },
    lines: BackupVmReport,
  }),
};
