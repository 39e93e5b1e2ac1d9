/**
 * image.import: a host file or an upload becomes a library image (the host probes, checks
 * and converts it; see agent/storage/images.ts). image.delete: the volume, then the row.
 */
import { asTernError, TernError } from '../../errors.ts';
import type { ImageKind, ImageSourceFormat } from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import type { ImageStore } from './images.ts';

export interface ImageDeps {
  images: ImageStore;
  hosts: HostRegistry;
}

export interface ImportParams {
  name: string;
  kind: ImageKind;
  format: ImageSourceFormat;
  hostId: string;
  volume: VolumeRef;
  sourcePath?: string;
  /** A staged upload on the host; removed once imported or failed. */
  upload?: VolumeRef;
  sha256?: string;
}

export function importTask(deps: ImageDeps): TaskKind<ImportParams> {
  return {
    kind: 'image.import',
    // The host stops converting when the manager goes away, so there is nothing to resume.
    onInterrupt: 'fail',
    async run(ctx, p) {
      if (await deps.images.has(p.name)) throw new TernError('conflict', `image ${p.name} exists`);
      const agent = deps.hosts.client(p.hostId);
      await ctx.step(p.upload ? 'importing the uploaded file' : `importing ${p.sourcePath}`, 0);
      // Progress arrives as events; writes are chained so they land in order.
      let writes = Promise.resolve();
      const later = (write: () => Promise<void>) => {
        writes = writes.then(write).catch(() => {});
      };
      const image = await agent.importImage(
        { volume: p.volume, kind: p.kind, format: p.format, sourcePath: p.sourcePath, upload: p.upload },
        {
          signal: ctx.signal,
          step: (name) => later(() => ctx.step(name)),
          progress: (percent) => later(() => ctx.progress(5 + percent * 0.9)),
        },
      );
      await writes;
      await ctx.step('recording the image', 97);
      await deps.images.insert({
        name: p.name,
        kind: p.kind,
        format: image.format,
        sourceFormat: image.sourceFormat,
        hostId: p.hostId,
        pool: p.volume.pool,
        path: p.volume.path,
        virtualBytes: image.virtualBytes,
        actualBytes: image.actualBytes,
        sha256: p.sha256 ?? image.sha256,
        createdAt: now(),
      });
      if (p.upload) {
        await agent
          .deleteVolume(p.upload)
          .catch((err) => ctx.log(`could not remove the upload: ${asTernError(err).message}`));
      }
      return {
        image: p.name,
        sourceFormat: image.sourceFormat,
        virtualBytes: image.virtualBytes,
        actualBytes: image.actualBytes,
      };
    },
    async cleanup(_ctx, p) {
      const agent = deps.hosts.client(p.hostId);
      const leftovers = p.upload ? [p.upload] : [];
      // A row means the volume belongs to an image (this one, or an older one of that name).
      if (!(await deps.images.has(p.name)))
        leftovers.push(p.volume, { pool: p.volume.pool, path: `${p.volume.path}.partial` });
      const undo = new Undo();
      for (const v of leftovers) await undo.step(`remove ${v.path}`, () => agent.deleteVolume(v));
      undo.done();
    },
  };
}

export interface DeleteParams {
  name: string;
}

export function deleteTask(deps: ImageDeps): TaskKind<DeleteParams> {
  return {
    kind: 'image.delete',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const row = await deps.images.row(p.name).catch(() => null);
      if (!row) return { deleted: p.name };
      if (row.hostId) {
        await ctx.step(`removing ${row.pool}:${row.path}`, 10);
        await deps.hosts.client(row.hostId).deleteVolume({ pool: row.pool, path: row.path });
      }
      await deps.images.remove(p.name);
      return { deleted: p.name };
    },
  };
}
