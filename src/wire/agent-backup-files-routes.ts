/**
 * The agent routes that read files out of a backup without restoring it
 * (src/agent/backup/backup-files.ts): a directory listing, and one file's bytes. Part of
 * `agentRoutes`.
 */
import { tags } from './agent-route-parts.ts';
import { BackupFileListing, BackupFilesRequest } from './backup.ts';
import { route } from './route.ts';

export const agentBackupFilesRoutes = {
  listBackupFiles: route({
    summary: "A directory of a backup disk's ext2/3/4 filesystem, with the disk's partitions",
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/files/list',
    body: BackupFilesRequest,
    reply: { 200: BackupFileListing },
  }),
  readBackupFile: route({
    summary: "One file of a backup disk's ext2/3/4 filesystem (symbolic links followed), its bytes",
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/files/read',
    body: BackupFilesRequest,
    reply: {},
    rawReply: { contentType: 'application/octet-stream', description: 'the bytes, as they are' },
  }),
};
