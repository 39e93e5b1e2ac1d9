/**
 * What the agent does for each route of the agent protocol (declared in src/wire/agent-routes.ts);
 * src/agent/server.ts registers them.
 */
import fs from 'node:fs';
import { Readable } from 'node:stream';
import { TernError } from '../errors.ts';
import { readSlots } from '../ha/statefile.ts';
import type { Handlers } from '../http/declared-routes.ts';
import { discardUnreadBody } from '../http/unread-body.ts';
import type { Identity } from '../pki/identity.ts';
import { agentProtocolVersion } from '../wire/agent.ts';
import type { AgentRoutes } from '../wire/agent-routes.ts';
import type { BackupVmReport, LiveRestoreReport } from '../wire/backup.ts';
import { maxUploadBytes } from '../wire/image.ts';
import type { ReplicateVmReport } from '../wire/replication.ts';
import type { BackupFiles } from './backup/backup-files.ts';
import { datastoreHandlers } from './backup/datastore-handlers.ts';
import type { HypervisorDriver } from './driver.ts';
import { replicaHandlers } from './replication/handlers.ts';
import { replicaLink } from './replication/replica-link.ts';
import { ReplicaStore } from './replication/replica-store.ts';
import { fileSha256 } from './storage/digest.ts';
import { libraryFile, planImport, runImport } from './storage/images.ts';
import { ImportSources } from './storage/import-sources.ts';
import { type Pools, resolveVolume } from './storage/pools.ts';
import { planUpload, receiveUpload } from './storage/uploads.ts';
import { listVmDirs } from './storage/vm-dirs.ts';
import {
  createSeed,
  createVolume,
  deleteVolume,
  importVolume,
  resizeVolume,
  volumeInfo,
  volumeSnapshot,
} from './storage/volumes.ts';
import { callerGone, eventStream, importStream, progressStream, transferStream } from './streams.ts';

export const agentVersion = '0.1.0';

export interface HandlerOptions {
  driver: HypervisorDriver;
  pools: Pools;
  /** Largest upload accepted (default: maxUploadBytes()). */
  maxUploadBytes?: number;
  /** Directories an import by path may read from (none: imports by upload only). */
  importDirs?: readonly string[];
  /** Reads files out of backups (absent: refused). */
  backupFiles?: BackupFiles;
  /** This host's certificate, presented to a replica's host (absent: replication refused). */
  identity?: Identity;
}

/** The largest file read out of a backup in one request. */
const MAX_BACKUP_FILE_BYTES = 1024 ** 3;

export function agentHandlers(opts: HandlerOptions): Handlers<AgentRoutes> {
  const { driver, pools } = opts;
  const sources = new ImportSources(opts.importDirs ?? []);
  const files = () => {
    if (!opts.backupFiles) throw new TernError('unavailable', 'this agent reads no files out of backups');
    return opts.backupFiles;
  };
  const mustRun = (id: string) => {
    if (!driver.get(id)) throw new TernError('not_found', `VM ${id} is not on this host`);
  };

  return {
    info: async () => ({ protocol: agentProtocolVersion, agentVersion, facts: await driver.facts() }),
    listVms: async () => ({ vms: driver.list() }),
    getVm: async (req) => {
      const vm = driver.get(req.params.id);
      if (!vm) throw new TernError('not_found', `VM ${req.params.id} is not on this host`);
      return { vm };
    },
    // The spec a VM runs with: how a VM the manager lost (an orphan) joins its inventory again.
    vmSpec: async (req) => {
      const spec = driver.spec(req.params.id);
      if (!spec) throw new TernError('not_found', `VM ${req.params.id} does not run on this host`);
      return { spec };
    },
    runVm: async (req) => {
      if (req.body.id !== req.params.id)
        throw new TernError('invalid_request', 'spec id does not match the path');
      return { vm: await driver.run(req.body) };
    },
    act: async (req) => ({ vm: await driver.act(req.params.id, req.params.action) }),
    forgetVm: async (req) => {
      await driver.forget(req.params.id);
    },
    console: async (req) => ({ text: await driver.consoleTail(req.params.id, req.query.bytes ?? 16 * 1024) }),
    events: async (req, reply) => eventStream(driver, req, reply),
    // The manager reads the HA statefile through any host that sees it: it need not mount the
    // shared storage itself.
    readStatefile: async (req) => {
      const file = resolveVolume(pools, { pool: req.query.pool, path: req.query.path });
      return { slots: await readSlots(file, req.query.slots) };
    },

    attachDisk: async (req) => {
      await driver.attachDisk(req.params.id, req.body);
      return { ok: true };
    },
    detachDisk: async (req) => {
      await driver.detachDisk(req.params.id, req.params.index);
    },
    plugNic: async (req) => {
      await driver.plugNic(req.params.id, req.body);
      return { ok: true };
    },
    unplugNic: async (req) => {
      await driver.unplugNic(req.params.id, req.params.mac);
    },
    linkNic: async (req) => {
      await driver.linkNic(req.params.id, req.params.mac, req.body.link);
      return { ok: true };
    },
    setNicRules: async (req) => {
      await driver.setNicRules(req.params.id, req.params.mac, req.body.rules);
      return { ok: true };
    },
    resizeDisk: async (req) => {
      await driver.resizeDisk(req.params.id, req.params.index, req.body.sizeBytes);
      return { ok: true };
    },
    changeCdrom: async (req) => {
      await driver.changeCdrom(req.params.id, req.body.medium, req.body.force);
      return { ok: true };
    },
    snapshotVm: async (req) => driver.snapshot(req.params.id, req.body.name),
    deleteVmSnapshot: async (req) => {
      await driver.deleteSnapshot(req.params.id, req.params.name);
    },
    guestExec: async (req) => driver.guestExec(req.params.id, req.body),
    guestFileRead: async (req, reply) => {
      const bytes = await driver.guestFileRead(req.params.id, req.body.path, req.body.maxBytes);
      reply.header('content-type', 'application/octet-stream').send(bytes);
    },

    // A manager that goes away (killed) during a copy stops it: nobody would record its result.
    createVolume: async (req, reply) => ({
      volume: await createVolume(pools, req.body, callerGone(reply.raw)),
    }),
    deleteVolume: async (req) => {
      deleteVolume(pools, req.query);
    },
    createSeed: async (req) => ({ volume: await createSeed(pools, req.body) }),
    importVolume: async (req) => ({ volume: await importVolume(pools, req.body) }),
    volumeInfo: async (req) => ({ volume: await volumeInfo(pools, req.query) }),
    resizeVolume: async (req) => ({ volume: await resizeVolume(pools, req.body) }),
    volumeSnapshot: async (req) => ({ volume: await volumeSnapshot(pools, req.body) }),
    vmDirs: async () => ({ dirs: await listVmDirs(pools) }),

    // Uploads are streamed to disk as they arrive, never held in memory.
    upload: async (req) => {
      const length = req.headers['content-length'] ? Number(req.headers['content-length']) : undefined;
      try {
        const file = await planUpload(pools, req.query, length, opts.maxUploadBytes ?? maxUploadBytes());
        if (!(req.body instanceof Readable))
          throw new TernError('unsupported_media_type', 'send the file as application/octet-stream');
        return await receiveUpload(req.query, file, req.body, length!);
      } catch (err) {
        discardUnreadBody(req.raw);
        throw err;
      }
    },
    // Checks that need no reading of the file fail first, with a plain error status.
    importImage: async (req, reply) => {
      const plan = planImport(pools, req.body, sources);
      let shown = -1;
      await importStream(req, reply, async (send, signal) => {
        const image = await runImport(plan, {
          signal,
          step: (step) => send({ type: 'step', step }),
          progress: (percent) => {
            if (Math.floor(percent) === shown) return;
            shown = Math.floor(percent);
            send({ type: 'progress', percent: shown });
          },
        });
        return { type: 'done', image };
      });
    },
    // A library image's stored file: its digest (read whole, as long as that takes; the caller
    // leaving stops it) and its bytes, streamed as they are read.
    imageDigest: async (req, reply) => {
      const { file, bytes } = libraryFile(pools, req.query);
      return { bytes, sha256: await fileSha256(file, callerGone(reply.raw)) };
    },
    imageContent: async (req, reply) => {
      const { file, bytes } = libraryFile(pools, req.query);
      reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(bytes))
        .send(fs.createReadStream(file));
    },

    listNetworks: async () => ({
      networks: driver.networks.list(),
      capabilities: await driver.networks.capabilities(),
    }),
    putNetwork: async (req) => {
      if (req.body.id !== req.params.id)
        throw new TernError('invalid_request', 'network spec id does not match the path');
      return { network: await driver.networks.apply(req.body) };
    },
    deleteNetwork: async (req) => {
      await driver.networks.remove(req.params.id);
    },
    ...datastoreHandlers(pools),
    ...replicaHandlers(new ReplicaStore(pools)),

    // A backup answers progress and log lines; the manager closing the connection cancels it,
    // leaving no backup (src/agent/backup/).
    listBackupFiles: async (req) => files().list(req.body),
    readBackupFile: async (req, reply) => {
      const { file, bytes } = await files().read(req.body, MAX_BACKUP_FILE_BYTES);
      const stream = fs.createReadStream(file);
      stream.once('close', () => fs.rmSync(file, { force: true }));
      reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(bytes))
        .send(stream);
    },
    prepareLiveRestore: async (req) => {
      await driver.prepareLiveRestore(req.params.id, req.body);
      return { ok: true as const };
    },
    streamLiveRestore: async (req, reply) => {
      mustRun(req.params.id);
      await transferStream<LiveRestoreReport>(req, reply, async (send, signal) => ({
        type: 'done',
        result: {
          streamedBytes: await driver.streamLiveRestore(
            req.params.id,
            req.body.disks,
            req.body.bytesPerS ?? 0,
            send,
            signal,
          ),
        },
      }));
    },
    backupVm: async (req, reply) => {
      await transferStream<BackupVmReport>(req, reply, async (send, signal) => ({
        type: 'done',
        result: await driver.backupVm(req.params.id, req.body, send, signal),
      }));
    },
    replicateVm: async (req, reply) => {
      const identity = opts.identity;
      if (!identity)
        throw new TernError('unavailable', 'this agent has no certificate to send a replica with');
      await transferStream<ReplicateVmReport>(req, reply, async (send, signal) => ({
        type: 'done',
        result: await driver.replicateVm(req.params.id, req.body, replicaLink(identity), send, signal),
      }));
    },

    // Migration (docs/agent-protocol.md, "Migration"): the target's three steps are plain
    // calls; the source's send and a disk move answer progress lines. The caller closing the
    // connection cancels them: the VM stays where it was.
    prepareIncoming: async (req) => driver.prepareIncoming(req.body),
    finishIncoming: async (req) => driver.finishIncoming(req.params.id),
    abortIncoming: async (req) => {
      await driver.abortIncoming(req.params.id);
    },
    releaseMigrated: async (req) => {
      await driver.releaseMigrated(req.params.id);
    },
    migrate: async (req, reply) => {
      mustRun(req.params.id);
      await progressStream(req, reply, (progress, signal) =>
        driver.migrate(req.params.id, req.body, progress, signal),
      );
    },
    moveDisk: async (req, reply) => {
      mustRun(req.params.id);
      await progressStream(req, reply, async (progress, signal) => {
        const started = Date.now();
        let copied = 0;
        await driver.moveDisk(
          req.params.id,
          req.body,
          (r) => {
            if (r.type === 'progress') copied = r.transferredBytes;
            progress(r);
          },
          signal,
        );
        // The guest never stops for a disk move: no stop time, no downtime.
        return {
          type: 'done',
          stoppedAt: 0,
          downtimeMs: 0,
          transferredBytes: copied,
          totalMs: Date.now() - started,
        };
      });
    },
  };
}
