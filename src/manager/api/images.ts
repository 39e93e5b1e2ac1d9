/**
 * /api/v1/images: disk images and ISOs in the library. Imported from a path on the host or
 * uploaded (streamed through to the host, never held here), then checked and converted by a
 * task on the host; verified against their recorded SHA-256 by a task, and downloaded back
 * (streamed from the host, never held here either).
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { TernError } from '../../errors.ts';
import { discardUnreadBody } from '../../http/unread-body.ts';
import { imageRoutes as routes } from '../../wire/api/images.ts';
import { type ImageKind, type ImageSourceFormat, maxUploadBytes } from '../../wire/image.ts';
import { imageVolumePath, refuseIfUsed } from '../library/images.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

/** The request body as a web stream; cancelling it discards the rest instead of cutting the connection. */
function bodyStream(raw: Readable): ReadableStream<Uint8Array> {
  const it = raw.iterator({ destroyOnReturn: false });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await it.next();
      if (done) controller.close();
      else controller.enqueue(new Uint8Array(value as Buffer));
    },
    async cancel() {
      await it.return?.();
      raw.resume();
    },
  });
}

function contentLength(header: string | undefined): number {
  if (header === undefined || !/^\d+$/.test(header))
    throw new TernError('invalid_request', 'an upload needs a Content-Length (chunked uploads are refused)');
  return Number(header);
}

function checkFormat(kind: ImageKind, format: ImageSourceFormat | undefined, compress: boolean): void {
  if (kind === 'iso' && format !== undefined && format !== 'auto' && format !== 'raw')
    throw new TernError('invalid_request', 'an ISO has no disk format to give');
  if (kind === 'iso' && compress)
    throw new TernError('invalid_request', 'an ISO is stored as it is; only disks are compressed');
}

export function imageRoutes(app: App, s: ApiServices): void {
  const limit = s.maxUploadBytes ?? maxUploadBytes();
  /** Names being uploaded: their task (and lock) only exists once the upload is complete. */
  const uploading = new Set<string>();

  const ensureFree = async (name: string) => {
    if (uploading.has(name) || (await s.images.has(name)))
      throw new TernError('conflict', `image ${name} exists or is being uploaded`);
  };
  const place = async () => {
    const host = await s.hosts.pickHost();
    const pool = host.facts?.pools[0]?.name;
    if (!pool) throw new TernError('unavailable', `host ${host.name} reports no storage pool`);
    return { host, pool };
  };

  if (!app.hasContentTypeParser('application/octet-stream'))
    app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  serve(app, routes.list, 'library.read', async () => ({ items: await s.images.list() }));

  serve(app, routes.show, 'library.read', async (req) => s.images.get(req.params.name));

  serve(app, routes.import, 'library.write', async (req, reply) => {
    const { name, sourcePath } = req.body;
    const kind = req.body.kind ?? 'disk';
    const compress = req.body.compress === true;
    checkFormat(kind, req.body.format, compress);
    await ensureFree(name);
    const { host, pool } = await place();
    const task = await s.tasks.submit(
      s.kinds.imageImport,
      {
        name,
        kind,
        format: req.body.format ?? 'auto',
        hostId: host.id,
        volume: { pool, path: imageVolumePath(name, kind) },
        sourcePath,
        ...(compress ? { compress } : {}),
      },
      [`image:${name}`],
    );
    return accepted(reply, task);
  });

  serve(app, routes.upload, 'library.write', async (req, reply) => {
    const { name } = req.params;
    const kind = req.query.kind ?? 'disk';
    const compress = req.query.compress === 'true';
    try {
      checkFormat(kind, req.query.format, compress);
      const length = contentLength(req.headers['content-length']);
      if (!(req.body instanceof Readable))
        throw new TernError('unsupported_media_type', 'send the file as application/octet-stream');
      if (length === 0) throw new TernError('invalid_request', 'the upload is empty');
      if (length > limit)
        throw new TernError(
          'payload_too_large',
          `the upload of ${length} bytes is over the limit of ${limit} bytes`,
          { limit },
        );
      await ensureFree(name);
      uploading.add(name);
      try {
        const { host, pool } = await place();
        const agent = s.hosts.client(host.id);
        const staging = { pool, path: `uploads/${randomUUID()}` };
        const sent = await agent.upload(staging, bodyStream(req.body), length);
        try {
          const task = await s.tasks.submit(
            s.kinds.imageImport,
            {
              name,
              kind,
              format: req.query.format ?? 'auto',
              hostId: host.id,
              volume: { pool, path: imageVolumePath(name, kind) },
              upload: staging,
              sha256: sent.sha256,
              ...(compress ? { compress } : {}),
            },
            [`image:${name}`],
          );
          return accepted(reply, task, { bytes: sent.bytes, sha256: sent.sha256 });
        } catch (err) {
          await agent.deleteVolume(staging).catch(() => {});
          throw err;
        }
      } finally {
        uploading.delete(name);
      }
    } catch (err) {
      discardUnreadBody(req.raw);
      throw err;
    }
  });

  serve(app, routes.content, 'library.read', async (req, reply) => {
    const row = await s.images.row(req.params.name);
    if (!row.hostId) throw new TernError('unavailable', `image ${row.name} has no host to read it from`);
    // The client leaving stops the read on the host.
    const gone = new AbortController();
    reply.raw.on('close', () => gone.abort());
    const { body, length } = await s.hosts
      .client(row.hostId)
      .download({ pool: row.pool, path: row.path }, gone.signal);
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': String(length),
      'content-disposition': `attachment; filename="${row.path.split('/').pop()}"`,
    });
    // A host failing midway cuts the connection: the client sees fewer bytes than announced.
    await pipeline(Readable.fromWeb(body as WebReadableStream<Uint8Array>), reply.raw).catch((err) => {
      req.log.warn({ err }, `download of image ${row.name} cut short`);
      reply.raw.destroy();
    });
  });

  serve(app, routes.verify, 'library.write', async (req, reply) => {
    const image = await s.images.get(req.params.name);
    const task = await s.tasks.submit(s.kinds.imageVerify, { name: image.name }, [`image:${image.name}`]);
    return accepted(reply, task);
  });

  serve(app, routes.remove, 'library.write', async (req, reply) => {
    const image = await s.images.get(req.params.name);
    await refuseIfUsed(s.images, image.name);
    const task = await s.tasks.submit(s.kinds.imageDelete, { name: image.name }, [`image:${image.name}`]);
    return accepted(reply, task);
  });
}
