/**
 * image.import: a host file or an upload becomes a library image (the host probes, checks
 * and converts it; see agent/storage/images.ts). image.verify: the stored file re-hashed on
 * its host against the digest recorded at import. image.delete: the volume, then the row.
 */
import { asTernError, TernError } from '../../errors.ts';
import type { ImageKind, ImageSourceFormat } from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { AlertStore } from '../alerts/store.ts';
import { now } from '../db/database.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { type ImageStore, refuseIfUsed } from './images.ts';

export interface ImageDeps {
  images: ImageStore;
  hosts: HostRegistry;
  alerts: AlertStore;
}

/** The alert a failed verify raises; a verify that matches, or the image's deletion, clears it. */
const mismatchAlert = (name: string) => `image:${name}:sha256-mismatch`;

export interface ImportParams {
  name: string;
  kind: ImageKind;
  format: ImageSourceFormat;
  hostId: string;
  volume: VolumeRef;
  sourcePath?: string;
  /** A staged upload on the host; removed once imported or failed. */
  upload?: VolumeRef;
  /** The upload's digest (of the file as sent, not as stored); shown in the result. */
  sha256?: string;
  compress?: boolean;
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
        {
          volume: p.volume,
          kind: p.kind,
          format: p.format,
          sourcePath: p.sourcePath,
          upload: p.upload,
          ...(p.compress ? { compress: true } : {}),
        },
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
        // Of the stored file: what verify and export can check later.
        sha256: image.sha256,
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
        sha256: image.sha256,
        ...(p.sha256 ? { sourceSha256: p.sha256 } : {}),
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
      await refuseIfUsed(deps.images, p.name);
      if (row.hostId) {
        await ctx.step(`removing ${row.pool}:${row.path}`, 10);
        await deps.hosts.client(row.hostId).deleteVolume({ pool: row.pool, path: row.path });
      }
      await deps.images.remove(p.name);
      await deps.alerts.clear(mismatchAlert(p.name));
      return { deleted: p.name };
    },
  };
}

export interface VerifyParams {
  name: string;
}

/**
 * Re-hashes the stored file on its host. A mismatch fails the task saying so and changes
 * nothing: the file may be damaged, or changed by hand, and only a person can tell which. An
 * image imported before digests were recorded gets the one computed now.
 */
export function verifyTask(deps: ImageDeps): TaskKind<VerifyParams> {
  return {
    kind: 'image.verify',
    // Read-only: nothing to undo, and a new verify is the way to retry.
    onInterrupt: 'fail',
    async run(ctx, p) {
      const row = await deps.images.row(p.name);
      if (!row.hostId) throw new TernError('unavailable', `image ${p.name} has no host to read it on`);
      await ctx.step(`hashing ${row.pool}:${row.path} on its host`, 10);
      const found = await deps.hosts
        .client(row.hostId)
        .imageDigest({ pool: row.pool, path: row.path }, ctx.signal);
      if (row.sha256 === null) {
        await deps.images.setSha256(p.name, found.sha256);
        await ctx.log(`no digest was recorded for ${p.name}; recorded ${found.sha256}`);
        return { image: p.name, ok: true, sha256: found.sha256, bytes: found.bytes, recorded: true };
      }
      if (found.sha256 !== row.sha256) {
        const message =
          `image ${p.name} does not match its recorded SHA-256: the stored file ${row.pool}:${row.path} ` +
          `hashes to ${found.sha256}, ${row.sha256} was recorded at import. Nothing was changed; ` +
          're-import the image or restore the file from a copy.';
        await deps.alerts.raise({
          id: mismatchAlert(p.name),
          severity: 'warning',
          object: `image:${p.name}`,
          message,
        });
        throw new TernError('storage_error', message, { recorded: row.sha256, actual: found.sha256 });
      }
      await deps.alerts.clear(mismatchAlert(p.name));
      return { image: p.name, ok: true, sha256: found.sha256, bytes: found.bytes };
    },
  };
}
