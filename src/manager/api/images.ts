/**
 * /api/v1/images: disk images and ISOs in the library. Imported from a path on the host or
 * uploaded (streamed through to the host, never held here), then checked and converted by a
 * task on the host.
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
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
import { deleteTask, importTask } from '../library/image-tasks.ts';
import { imageVolumePath } from '../library/images.ts';
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

function checkFormat(kind: ImageKind, format: ImageSourceFormat | undefined): void {
  if (kind === 'iso' && format !== undefined && format !== 'auto' && format !== 'raw')
    throw new TernError('invalid_request', 'an ISO has no disk format to give');
}

export function imageRoutes(app: App, s: ApiServices): void {
  const importer = importTask(s);
  const remove = deleteTask(s);
  s.tasks.register(importer);
  s.tasks.register(remove);
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
      checkFormat(kind, req.body.format);
      await ensureFree(name);
      const { host, pool } = await place();
      const task = await s.tasks.submit(
        importer,
        {
          name,
          kind,
          format: req.body.format ?? 'auto',
          hostId: host.id,
          volume: { pool, path: imageVolumePath(name, kind) },
          sourcePath,
        },
        [`image:${name}`],
      );
      return accepted(reply, task);
    },
  );

  app.put(
    '/api/v1/images/:name',
    {
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
      try {
        checkFormat(kind, req.query.format);
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
              importer,
              {
                name,
                kind,
                format: req.query.format ?? 'auto',
                hostId: host.id,
                volume: { pool, path: imageVolumePath(name, kind) },
                upload: staging,
                sha256: sent.sha256,
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

  app.delete(
    '/api/v1/images/:name',
    {
      schema: {
        summary: 'Delete an image and its volume',
        tags: ['library'],
        params: NameParams,
        response: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const image = await s.images.get(req.params.name);
      const task = await s.tasks.submit(remove, { name: image.name }, [`image:${image.name}`]);
      return accepted(reply, task);
    },
  );
}
