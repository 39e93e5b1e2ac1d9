/**
 * /api/v1/backups/{vm}/{backup}/files: files out of a backup without restoring it, read by a
 * host that reaches its datastore (src/agent/backup/backup-files.ts): a directory listing and
 * one file's bytes. Answered at once and audited with the path, like reads of a guest's files.
 */
import { type Static, Type } from 'typebox';
import { BackupFileListing, BackupName } from '../backup.ts';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';

export const BackupFilesBody = Type.Object(
  {
    /** The backup's disk (default `disk0`). */
    disk: Type.Optional(BackupName),
    /** The partition (default: the largest, or the whole disk without a partition table). */
    partition: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
    path: Type.String({
      minLength: 1,
      maxLength: 4096,
      pattern: '^/',
      description: 'absolute path in the guest',
    }),
  },
  { additionalProperties: false },
);
export type BackupFilesBody = Static<typeof BackupFilesBody>;

const BackupRef = Type.Object({ vm: Type.String({ minLength: 1, maxLength: 63 }), backup: BackupName });
const InDatastore = Type.Object({ datastore: Type.Optional(Name) });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody };
const tags = ['backup'];

export const backupFileRoutes = {
  listFiles: route({
    method: 'POST',
    path: '/api/v1/backups/:vm/:backup/files/list',
    summary: "A directory of a backup disk's ext2/3/4 filesystem, with the disk's partitions",
    tags,
    params: BackupRef,
    query: InDatastore,
    body: BackupFilesBody,
    reply: { 200: BackupFileListing, ...errors },
  }),
  readFile: route({
    method: 'POST',
    path: '/api/v1/backups/:vm/:backup/files/read',
    summary:
      "One file of a backup disk's filesystem (symbolic links followed, at most 1 GiB); the answer is its bytes",
    tags,
    params: BackupRef,
    query: InDatastore,
    body: BackupFilesBody,
    reply: errors,
    rawReply: {
      contentType: 'application/octet-stream',
      description: "the file's bytes as they are in the backup",
    },
  }),
};
