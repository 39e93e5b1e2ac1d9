/**
 * /api/v1/backup/datastores/{datastore}/sync: an offsite copy, the backups of a datastore that
 * another lacks copied there under that one's key (a task).
 */
import { type Static, Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

export const SyncBody = Type.Object(
  {
    /** The datastore the copies go to. */
    target: Name,
    /** Only this VM's backups (name or id; a deleted VM by id). */
    vm: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
    /** Refuse a target that is not encrypted (default false). */
    encryptedOnly: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type SyncBody = Static<typeof SyncBody>;

export const backupSyncRoutes = {
  sync: route({
    method: 'POST',
    path: '/api/v1/backup/datastores/:datastore/sync',
    summary: 'Copy the backups of a datastore that another lacks there (an offsite copy, under its key)',
    tags: ['backup'],
    params: Type.Object({ datastore: Name }),
    body: SyncBody,
    reply: { 202: TaskAccepted, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
  }),
};
