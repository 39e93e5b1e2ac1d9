/**
 * What the agent does for each datastore route (src/wire/agent-datastore-routes.ts): it opens
 * the datastore with the key the manager sent for this request only, and answers from the
 * directory itself: the manager's inventory follows what is there.
 */
import path from 'node:path';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { collectGarbage } from '../../backup/datastore/gc.ts';
import { syncDatastore } from '../../backup/datastore/sync.ts';
import { verifyBackups } from '../../backup/datastore/verify.ts';
import { TernError } from '../../errors.ts';
import type { Handlers } from '../../http/declared-routes.ts';
import type { agentDatastoreRoutes } from '../../wire/agent-datastore-routes.ts';
import type {
  DatastoreAccess,
  DatastoreStatus,
  GcReport,
  RestoreDiskReport,
  StoredBackup,
  SyncDatastoreReport,
  VerifyReport,
} from '../../wire/backup.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { transferStream } from '../streams.ts';
import { restoreDisk } from './restore.ts';

/** The key of a request, as the 32 bytes the datastore wants (null: none). */
function keyOf(access: DatastoreAccess): Buffer | undefined {
  if (access.key === null) return undefined;
  const key = Buffer.from(access.key, 'base64');
  if (key.length !== 32) throw new TernError('invalid_request', 'a datastore key is 32 bytes');
  return key;
}

/** The directory, as an absolute path without `..` (the manager names it; a slip must not climb). */
function dirOf(access: DatastoreAccess): string {
  const dir = path.resolve(access.path);
  if (dir !== access.path.replace(/\/+$/, '') || dir === '/')
    throw new TernError('invalid_request', `datastore path ${access.path} is not a plain absolute path`);
  return dir;
}

export function openDatastore(access: DatastoreAccess): Promise<Datastore> {
  return Datastore.open(dirOf(access), { key: keyOf(access) });
}

async function statusOf(ds: Datastore): Promise<DatastoreStatus> {
  return { path: ds.dir, encrypted: ds.encrypted, ...(await ds.usage()) };
}

export function datastoreHandlers(pools: Pools): Handlers<typeof agentDatastoreRoutes> {
  return {
    createDatastore: async (req) => {
      const access = req.body.datastore;
      return statusOf(await Datastore.create(dirOf(access), { key: keyOf(access) }));
    },
    datastoreStatus: async (req) => statusOf(await openDatastore(req.body.datastore)),
    listBackups: async (req) => {
      const ds = await openDatastore(req.body.datastore);
      const backups: StoredBackup[] = [];
      for (const { group, id } of await ds.listBackups(req.body.group)) {
        try {
          const m = await ds.readManifest(group, id);
          backups.push({
            group,
            id,
            createdAt: m.createdAt,
            labels: m.labels,
            disks: m.disks.map((d) => ({ name: d.name, sizeBytes: d.size, chunkSize: d.chunkSize })),
          });
        } catch (err) {
          // A damaged manifest is no backup anyone can restore; verify names what is wrong.
          req.log.warn({ err, group, id, datastore: ds.dir }, 'backup manifest unreadable: not listed');
        }
      }
      return { backups };
    },
    forgetBackup: async (req) => {
      const ds = await openDatastore(req.body.datastore);
      await ds.forgetBackup(req.body.group, req.body.id);
      return { ok: true as const };
    },
    // The long ones answer progress lines; the manager closing the connection cancels them.
    verifyBackups: async (req, reply) => {
      const ds = await openDatastore(req.body.datastore);
      await transferStream<VerifyReport>(req, reply, async (send, signal) => {
        const progress = (p: { item: string; doneBytes: number; totalBytes: number }) =>
          send({ type: 'progress', ...p, writtenBytes: 0, bytesPerS: 0 });
        return { type: 'done', result: await verifyBackups(ds, req.body.backups, progress, signal) };
      });
    },
    collectGarbage: async (req, reply) => {
      const ds = await openDatastore(req.body.datastore);
      const since = new Date(req.body.protectSince);
      if (Number.isNaN(since.getTime())) throw new TernError('invalid_request', 'protectSince is no time');
      await transferStream<GcReport>(req, reply, async (send, signal) => {
        // Counts, not bytes: backups marked, then chunk files looked at (their total unknown).
        const progress = (p: { phase: string; done: number; total: number }) =>
          send({
            type: 'progress',
            item: p.phase === 'mark' ? 'marking backups' : 'sweeping chunks',
            doneBytes: p.done,
            totalBytes: p.total,
            writtenBytes: 0,
            bytesPerS: 0,
          });
        return { type: 'done', result: await collectGarbage(ds, since, progress, signal) };
      });
    },
    restoreDisk: async (req, reply) => {
      const ds = await openDatastore(req.body.datastore);
      const file = resolveVolume(pools, req.body.target);
      await transferStream<RestoreDiskReport>(req, reply, async (send, signal) => {
        const result = await restoreDisk(ds, { ...req.body, file, progress: send, signal });
        return { type: 'done', result };
      });
    },
    syncDatastore: async (req, reply) => {
      const [source, target] = [await openDatastore(req.body.source), await openDatastore(req.body.target)];
      await transferStream<SyncDatastoreReport>(req, reply, async (send, signal) => {
        const started = Date.now();
        const progress = (p: { item: string; doneBytes: number; totalBytes: number; writtenBytes: number }) =>
          send({
            type: 'progress',
            ...p,
            bytesPerS: (p.writtenBytes * 1000) / Math.max(1, Date.now() - started),
          });
        const { groups, encryptedOnly } = req.body;
        const result = await syncDatastore(source, target, {
          encryptedOnly,
          progress,
          signal,
          ...(groups ? { groups } : {}),
        });
        return { type: 'done', result };
      });
    },
  };
}
