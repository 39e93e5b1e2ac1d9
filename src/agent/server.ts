/**
 * The agent's side of the agent protocol (docs/agent-protocol.md): a small HTTP API that
 * only managers of its cluster may call (mutual TLS), plus an event stream of VM changes.
 */
import fs from 'node:fs';
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { asTernError, TernError } from '../errors.ts';
import { maxSlots, readSlots } from '../ha/statefile.ts';
import { installErrorHandling } from '../http/errors.ts';
import { discardUnreadBody } from '../http/unread-body.ts';
import { validation } from '../http/validation.ts';
import { type Logger, quietRequests } from '../log.ts';
import { type Identity, peerOf } from '../pki/identity.ts';
import {
  type AgentEvent,
  type AgentVm,
  agentProtocolVersion,
  ChangeCdromRequest,
  CreateSeedRequest,
  CreateVolumeRequest,
  ImportVolumeRequest,
  IncomingMigrationRequest,
  MigrateRequest,
  type MigrationReport,
  MoveDiskRequest,
  protocolHeader,
  ResizeVolumeRequest,
  SnapshotName,
  Uuid,
  VmAction,
  VolumeSnapshotRequest,
} from '../wire/agent.ts';
import { GuestExecRequest, GuestFileReadRequest } from '../wire/guest-command.ts';
import { type ImportEvent, ImportImageRequest, maxUploadBytes, UploadQuery } from '../wire/image.ts';
import { DiskSpec, VmSpec, VolumeRef } from '../wire/vm.ts';
import type { HypervisorDriver } from './driver.ts';
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

export const agentVersion = '0.1.0';

/** Aborts when the caller closes its connection before the answer is complete. */
function callerGone(res: ServerResponse): AbortSignal {
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return gone.signal;
}

export interface AgentServerOptions {
  driver: HypervisorDriver;
  pools: Pools;
  /** This host's certificate and the cluster CA; callers must present a manager certificate. */
  identity: Identity;
  log: Logger;
  /** Largest upload accepted (default: maxUploadBytes()). */
  maxUploadBytes?: number;
  /** True while the host has fenced itself (HA): commands that change anything are refused. */
  fenced?: () => boolean;
  /** Directories an import by path may read from (none: imports by upload only). */
  importDirs?: readonly string[];
}

export async function buildAgentServer(opts: AgentServerOptions): Promise<FastifyInstance> {
  const { driver, pools } = opts;
  const sources = new ImportSources(opts.importDirs ?? []);
  const app = Fastify({
    loggerInstance: quietRequests(opts.log),
    bodyLimit: 1024 * 1024,
    ...validation,
    https: {
      key: opts.identity.key,
      cert: opts.identity.cert,
      ca: opts.identity.ca,
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: 'TLSv1.3',
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);

  app.addHook('onRequest', async (req) => {
    // The TLS handshake already refused certificates from any other CA; another host of the
    // cluster has a valid certificate too, but only a manager may command this agent.
    if (peerOf(req.raw.socket as TLSSocket)?.role !== 'tern-manager') {
      throw new TernError('unauthorized', 'this agent only answers managers of its cluster');
    }
    const v = req.headers[protocolHeader];
    if (v !== undefined && v !== String(agentProtocolVersion)) {
      throw new TernError(
        'protocol_error',
        `agent speaks protocol ${agentProtocolVersion}, the manager ${v}`,
      );
    }
    // Reads stay open, so the manager can see what the fence left behind.
    if (req.method !== 'GET' && req.method !== 'HEAD' && opts.fenced?.()) {
      throw new TernError(
        'unavailable',
        'this host fenced itself: it reached neither a manager nor its HA statefile for the HA timeout and killed its protected VMs; it takes commands again once both are back',
      );
    }
  });

  const IdParams = Type.Object({ id: Uuid });

  app.get('/agent/v1/info', async () => ({
    protocol: agentProtocolVersion,
    agentVersion,
    facts: await driver.facts(),
  }));

  // The manager reads the HA statefile through any host that sees it: it need not mount the
  // shared storage itself.
  app.get(
    '/agent/v1/ha/statefile',
    {
      schema: {
        querystring: Type.Object(
          {
            pool: Type.String({ maxLength: 63 }),
            path: VolumeRef.properties.path,
            slots: Type.Integer({ minimum: 1, maximum: maxSlots }),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const file = resolveVolume(pools, { pool: req.query.pool, path: req.query.path });
      return { slots: await readSlots(file, req.query.slots) };
    },
  );

  app.get('/agent/v1/vms', async () => ({ vms: driver.list() }));

  app.get('/agent/v1/vms/:id', { schema: { params: IdParams } }, async (req) => {
    const vm = driver.get(req.params.id);
    if (!vm) throw new TernError('not_found', `VM ${req.params.id} is not on this host`);
    return { vm };
  });

  // The spec a VM runs with: how a VM the manager lost (an orphan) joins its inventory again.
  app.get('/agent/v1/vms/:id/spec', { schema: { params: IdParams } }, async (req) => {
    const spec = driver.spec(req.params.id);
    if (!spec) throw new TernError('not_found', `VM ${req.params.id} does not run on this host`);
    return { spec };
  });

  app.get('/agent/v1/volumes/vm-dirs', async () => ({ dirs: await listVmDirs(pools) }));

  app.put('/agent/v1/vms/:id', { schema: { params: IdParams, body: VmSpec } }, async (req) => {
    if (req.body.id !== req.params.id)
      throw new TernError('invalid_request', 'spec id does not match the path');
    return { vm: await driver.run(req.body) };
  });

  app.post(
    '/agent/v1/vms/:id/actions/:action',
    { schema: { params: Type.Object({ id: Uuid, action: VmAction }) } },
    async (req) => ({ vm: await driver.act(req.params.id, req.params.action) }),
  );

  app.delete('/agent/v1/vms/:id', { schema: { params: IdParams } }, async (req, reply) => {
    await driver.forget(req.params.id);
    return reply.status(204).send();
  });

  app.get(
    '/agent/v1/vms/:id/console',
    {
      schema: {
        params: IdParams,
        querystring: Type.Object({
          bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 * 1024 })),
        }),
      },
    },
    async (req) => ({ text: await driver.consoleTail(req.params.id, req.query.bytes ?? 16 * 1024) }),
  );

  // A manager that goes away (killed) during a copy stops it: nobody would record its result.
  app.post('/agent/v1/volumes', { schema: { body: CreateVolumeRequest } }, async (req, reply) => ({
    volume: await createVolume(pools, req.body, callerGone(reply.raw)),
  }));
  app.post('/agent/v1/volumes/seed', { schema: { body: CreateSeedRequest } }, async (req) => ({
    volume: await createSeed(pools, req.body),
  }));
  app.post('/agent/v1/volumes/import', { schema: { body: ImportVolumeRequest } }, async (req) => ({
    volume: await importVolume(pools, req.body),
  }));
  app.get('/agent/v1/volumes/info', { schema: { querystring: VolumeRef } }, async (req) => ({
    volume: await volumeInfo(pools, req.query),
  }));
  app.delete('/agent/v1/volumes', { schema: { querystring: VolumeRef } }, async (req, reply) => {
    deleteVolume(pools, req.query);
    return reply.status(204).send();
  });
  app.post('/agent/v1/volumes/resize', { schema: { body: ResizeVolumeRequest } }, async (req) => ({
    volume: await resizeVolume(pools, req.body),
  }));
  app.post('/agent/v1/volumes/snapshots', { schema: { body: VolumeSnapshotRequest } }, async (req) => ({
    volume: await volumeSnapshot(pools, req.body),
  }));

  app.post(
    '/agent/v1/vms/:id/disks/:index/resize',
    {
      schema: {
        params: Type.Object({ id: Uuid, index: Type.Integer({ minimum: 0, maximum: 15 }) }),
        body: Type.Object({ sizeBytes: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
      },
    },
    async (req) => {
      await driver.resizeDisk(req.params.id, req.params.index, req.body.sizeBytes);
      return { ok: true };
    },
  );
  app.post(
    '/agent/v1/vms/:id/cdrom',
    { schema: { params: IdParams, body: ChangeCdromRequest } },
    async (req) => {
      await driver.changeCdrom(req.params.id, req.body.medium, req.body.force);
      return { ok: true };
    },
  );
  app.post('/agent/v1/vms/:id/disks', { schema: { params: IdParams, body: DiskSpec } }, async (req) => {
    await driver.attachDisk(req.params.id, req.body);
    return { ok: true };
  });
  app.delete(
    '/agent/v1/vms/:id/disks/:index',
    { schema: { params: Type.Object({ id: Uuid, index: Type.Integer({ minimum: 0, maximum: 15 }) }) } },
    async (req, reply) => {
      await driver.detachDisk(req.params.id, req.params.index);
      return reply.status(204).send();
    },
  );
  app.post(
    '/agent/v1/vms/:id/snapshots',
    {
      schema: {
        params: IdParams,
        body: Type.Object({ name: SnapshotName }, { additionalProperties: false }),
      },
    },
    async (req) => driver.snapshot(req.params.id, req.body.name),
  );
  app.delete(
    '/agent/v1/vms/:id/snapshots/:name',
    { schema: { params: Type.Object({ id: Uuid, name: SnapshotName }) } },
    async (req, reply) => {
      await driver.deleteSnapshot(req.params.id, req.params.name);
      return reply.status(204).send();
    },
  );

  // Guest commands (docs/agent-protocol.md): a command's standard input may be 1 MiB, in base64.
  app.post(
    '/agent/v1/vms/:id/guest/exec',
    { bodyLimit: 2 * 1024 * 1024, schema: { params: IdParams, body: GuestExecRequest } },
    async (req) => driver.guestExec(req.params.id, req.body),
  );
  app.post(
    '/agent/v1/vms/:id/guest/file-read',
    { schema: { params: IdParams, body: GuestFileReadRequest } },
    async (req, reply) => {
      const bytes = await driver.guestFileRead(req.params.id, req.body.path, req.body.maxBytes);
      return reply.header('content-type', 'application/octet-stream').send(bytes);
    },
  );

  // Uploads are streamed to disk as they arrive, never held in memory.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
  app.put('/agent/v1/uploads', { schema: { querystring: UploadQuery } }, async (req) => {
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
  });

  // A library image's stored file: its digest (read whole, as long as that takes; the caller
  // leaving stops it) and its bytes, streamed as they are read.
  app.get('/agent/v1/images/digest', { schema: { querystring: UploadQuery } }, async (req, reply) => {
    const { file, bytes } = libraryFile(pools, req.query);
    return { bytes, sha256: await fileSha256(file, callerGone(reply.raw)) };
  });
  app.get('/agent/v1/images/content', { schema: { querystring: UploadQuery } }, async (req, reply) => {
    const { file, bytes } = libraryFile(pools, req.query);
    return reply
      .header('content-type', 'application/octet-stream')
      .header('content-length', String(bytes))
      .send(fs.createReadStream(file));
  });
  // An import answers newline-delimited JSON: steps and progress, then `done` or `error`.
  // Checks that need no reading of the file fail first, with a plain error status.
  app.post('/agent/v1/images/import', { schema: { body: ImportImageRequest } }, async (req, reply) => {
    const plan = planImport(pools, req.body, sources);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const send = (e: ImportEvent) => {
      if (!res.destroyed) res.write(`${JSON.stringify(e)}\n`);
    };
    // The manager gone (crashed, or the task cancelled) stops the import and removes its files.
    const gone = callerGone(res);
    const beat = setInterval(() => send({ type: 'heartbeat' }), 5000);
    let shown = -1;
    try {
      const image = await runImport(plan, {
        signal: gone,
        step: (step) => send({ type: 'step', step }),
        progress: (percent) => {
          if (Math.floor(percent) === shown) return;
          shown = Math.floor(percent);
          send({ type: 'progress', percent: shown });
        },
      });
      send({ type: 'done', image });
    } catch (err) {
      const e = asTernError(err);
      if (e.status >= 500) req.log.error({ err }, e.message);
      send({ type: 'error', error: { code: e.code, message: e.message } });
    } finally {
      clearInterval(beat);
      res.end();
    }
  });

  // Migration (docs/agent-protocol.md, "Migration"): the target's three steps are plain calls;
  // the source's send and a disk move answer newline-delimited JSON progress, then `done` or
  // `error`. The caller closing the connection cancels them: the VM stays where it was.
  app.post('/agent/v1/migrations/incoming', { schema: { body: IncomingMigrationRequest } }, async (req) =>
    driver.prepareIncoming(req.body),
  );
  app.post('/agent/v1/migrations/incoming/:id/finish', { schema: { params: IdParams } }, async (req) =>
    driver.finishIncoming(req.params.id),
  );
  app.delete('/agent/v1/migrations/incoming/:id', { schema: { params: IdParams } }, async (req, reply) => {
    await driver.abortIncoming(req.params.id);
    return reply.status(204).send();
  });
  app.post('/agent/v1/vms/:id/release', { schema: { params: IdParams } }, async (req, reply) => {
    await driver.releaseMigrated(req.params.id);
    return reply.status(204).send();
  });

  const progressStream = async (
    req: FastifyRequest,
    reply: FastifyReply,
    work: (progress: (r: MigrationReport) => void, signal: AbortSignal) => Promise<MigrationReport>,
  ) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    let sentAt = 0;
    let latest: MigrationReport | null = null;
    const send = (r: MigrationReport) => {
      if (r.type === 'progress') latest = r;
      sentAt = Date.now();
      if (!res.destroyed) res.write(`${JSON.stringify(r)}\n`);
    };
    // A line at least every second, also while QEMU is set up or a cancel winds down.
    const beat = setInterval(() => {
      if (latest && Date.now() - sentAt >= 900) send(latest);
    }, 1000);
    const gone = callerGone(res);
    try {
      send(await work(send, gone));
    } catch (err) {
      const e = asTernError(err);
      if (e.status >= 500) req.log.error({ err }, e.message);
      send({ type: 'error', code: e.code, message: e.message });
    } finally {
      clearInterval(beat);
      res.end();
    }
  };
  app.post(
    '/agent/v1/vms/:id/migrate',
    { schema: { params: IdParams, body: MigrateRequest } },
    async (req, reply) => {
      if (!driver.get(req.params.id))
        throw new TernError('not_found', `VM ${req.params.id} is not on this host`);
      await progressStream(req, reply, (progress, signal) =>
        driver.migrate(req.params.id, req.body, progress, signal),
      );
    },
  );
  app.post(
    '/agent/v1/vms/:id/disks/move',
    { schema: { params: IdParams, body: MoveDiskRequest } },
    async (req, reply) => {
      if (!driver.get(req.params.id))
        throw new TernError('not_found', `VM ${req.params.id} is not on this host`);
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
  );

  // Newline-delimited JSON: a hello, then every VM change, with a heartbeat every 5 s so the
  // manager notices a dead connection.
  app.get('/agent/v1/events', (req, reply) => {
    reply.raw.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const send = (e: AgentEvent) => {
      reply.raw.write(`${JSON.stringify(e)}\n`);
      // A manager that stopped reading gets cut off rather than buffered for without end.
      if (reply.raw.writableLength > 4 * 1024 * 1024) reply.raw.destroy();
    };
    send({ type: 'hello', protocol: agentProtocolVersion, time: new Date().toISOString() });
    for (const vm of driver.list()) send({ type: 'vm', vm });
    const vmListener = (vm: AgentVm) => send({ type: 'vm', vm });
    const goneListener = (id: string) => send({ type: 'vm.gone', id });
    driver.events.on('vm', vmListener);
    driver.events.on('gone', goneListener);
    const beat = setInterval(() => send({ type: 'heartbeat', time: new Date().toISOString() }), 5000);
    req.raw.on('close', () => {
      clearInterval(beat);
      driver.events.off('vm', vmListener);
      driver.events.off('gone', goneListener);
    });
  });

  return app;
}
