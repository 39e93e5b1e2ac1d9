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
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { discardUnreadBody } from '../../http/unread-body.ts';
import { ErrorBody, Name } from '../../wire/common.ts';
import {
  CreateImageRequest,
  Image,
  type ImageKind,
  type ImageSourceFormat,
  maxUploadBytes,
  Sha256,
  UploadImageQuery,
} from '../../wire/image.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { imageVolumePath, refuseIfUsed } from '../library/images.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';

const NameParams = Type.Object({ name: Name });

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

  app.get(
    '/api/v1/images',
    {
      config: { access: 'library.read' },
      schema: {
        summary: 'List disk images and ISOs',
        tags: ['library'],
        response: { 200: Type.Object({ items: Type.Array(Image) }) },
      },
    },
    async () => ({ items: await s.images.list() }),
  );

  app.get(
    '/api/v1/images/:name',
    {
      config: { access: 'library.read' },
      schema: {
        summary: 'Show an image',
        tags: ['library'],
        params: NameParams,
        response: { 200: Image, 400: ErrorBody, 404: ErrorBody },
      },
    },
    async (req) => s.images.get(req.params.name),
  );

  app.post(
    '/api/v1/images',
    {
      config: { access: 'library.write' },
      schema: {
        summary:
          'Import a disk image (raw, qcow2, VMDK, VHD, VHDX; stored as qcow2) or an ISO from a path on the host',
        tags: ['library'],
        body: CreateImageRequest,
        response: { 202: TaskAccepted, 400: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
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
    },
  );

  app.put(
    '/api/v1/images/:name',
    {
      config: { access: 'library.write' },
      schema: {
        summary:
          'Upload a disk image or ISO (application/octet-stream with a Content-Length), then import it',
        tags: ['library'],
        params: NameParams,
        querystring: UploadImageQuery,
        response: {
          202: Type.Object({ task: TaskAccepted.properties.task, bytes: Type.Integer(), sha256: Sha256 }),
          400: ErrorBody,
          409: ErrorBody,
          413: ErrorBody,
          415: ErrorBody,
        },
      },
    },
    async (req, reply) => {
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
    },
  );

  app.get(
    '/api/v1/images/:name/content',
    {
      config: { access: 'library.read' },
      schema: {
        summary: 'Download an image: its stored file as it is (qcow2 or ISO), streamed from its host',
        tags: ['library'],
        params: NameParams,
        response: { 400: ErrorBody, 404: ErrorBody, 503: ErrorBody },
      },
    },
    async (req, reply) => {
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
    },
  );

  app.post(
    '/api/v1/images/:name/verify',
    {
      config: { access: 'library.write' },
      schema: {
        summary:
          'Check an image: re-hash its stored file on its host against the SHA-256 recorded at import (the task fails on a mismatch, changing nothing)',
        tags: ['library'],
        params: NameParams,
        response: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const image = await s.images.get(req.params.name);
      const task = await s.tasks.submit(s.kinds.imageVerify, { name: image.name }, [`image:${image.name}`]);
      return accepted(reply, task);
    },
  );

  app.delete(
    '/api/v1/images/:name',
    {
      config: { access: 'library.write' },
      schema: {
        summary: 'Delete an image and its volume',
        tags: ['library'],
        params: NameParams,
        response: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const image = await s.images.get(req.params.name);
      await refuseIfUsed(s.images, image.name);
      const task = await s.tasks.submit(s.kinds.imageDelete, { name: image.name }, [`image:${image.name}`]);
      return accepted(reply, task);
    },
  );
}
