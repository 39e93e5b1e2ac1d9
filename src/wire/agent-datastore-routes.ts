/**
 * The agent routes of backup datastores (src/backup/datastore/): a host that reaches a
 * datastore's directory creates it, tells its state, lists and forgets its backups. The key
 * travels in each request body (never in a URL, never written on the host), hence POST
 * everywhere. Part of `agentRoutes`.
 */
import { Type } from 'typebox';
import { Ok, tags } from './agent-route-parts.ts';
import {
  CreateDatastoreRequest,
  DatastoreAccess,
  DatastoreStatus,
  ForgetBackupRequest,
  GcReport,
  GcRequest,
  ListBackupsRequest,
  RestoreDiskReport,
  RestoreDiskRequest,
  StoredBackup,
  SyncDatastoreReport,
  SyncDatastoreRequest,
  VerifyReport,
  VerifyRequest,
} from './backup.ts';
import { route } from './route.ts';

const ndjson = {
  contentType: 'application/x-ndjson',
  description: 'newline-delimited JSON, one line each as `lines` declares',
};

export const agentDatastoreRoutes = {
  createDatastore: route({
    summary: 'Make a directory a datastore (encrypted when a key is given); one there already is a conflict',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/create',
    body: CreateDatastoreRequest,
    reply: { 200: DatastoreStatus },
  }),
  datastoreStatus: route({
    summary: 'Open a datastore with its key and tell its size and free space',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/status',
    body: Type.Object({ datastore: DatastoreAccess }, { additionalProperties: false }),
    reply: { 200: DatastoreStatus },
  }),
  listBackups: route({
    summary: 'The finished backups of a datastore (of one group, or all), as their manifests tell',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/backups',
    body: ListBackupsRequest,
    reply: { 200: Type.Object({ backups: Type.Array(StoredBackup) }) },
  }),
  forgetBackup: route({
    summary: 'Remove a backup, finished or not (its chunks stay until a GC); one not there is done',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/forget',
    body: ForgetBackupRequest,
    reply: { 200: Ok },
  }),
  verifyBackups: route({
    summary: 'Re-read the chunks of the given backups and check each against its name, answering progress',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/verify',
    body: VerifyRequest,
    // 100000 backups named.
    bodyLimit: 16 * 1024 * 1024,
    reply: {},
    rawReply: ndjson,
    lines: VerifyReport,
  }),
  collectGarbage: route({
    summary: 'Remove the chunks no backup names and nothing touched since protectSince, answering progress',
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/gc',
    body: GcRequest,
    reply: {},
    rawReply: ndjson,
    lines: GcReport,
  }),
  restoreDisk: route({
    summary: "Write a backup's disk onto a volume of this host (made by the caller), answering progress",
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/restore',
    body: RestoreDiskRequest,
    reply: {},
    rawReply: ndjson,
    lines: RestoreDiskReport,
  }),
  syncDatastore: route({
    summary:
      "Copy the backups of one datastore not yet in another there (an offsite copy), each chunk under the target's key, answering progress",
    tags,
    method: 'POST',
    path: '/agent/v1/datastores/sync',
    body: SyncDatastoreRequest,
    bodyLimit: 16 * 1024 * 1024,
    reply: {},
    rawReply: ndjson,
    lines: SyncDatastoreReport,
  }),
};
