/**
 * template.from-image: a library disk image becomes a template. Its disk is a standalone copy
 * of the image (flattened and, for a compressed image, decompressed, like a sealed VM's), grown
 * to the size asked; the template records the defaults its VMs get (vCPUs, memory, firmware, OS
 * kind). Killed at any point it fails and its copy is removed; a recorded template is done.
 */
import { TernError } from '../../errors.ts';
import type { OsKind } from '../../wire/template.ts';
import type { Firmware, VolumeRef } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import type { ImageStore } from './images.ts';
import type { TemplateStore } from './templates.ts';

export interface FromImageParams {
  name: string;
  image: string;
  description: string;
  hostId: string;
  /** The image's stored file, and where the template's copy goes. */
  source: VolumeRef;
  disk: VolumeRef;
  sizeBytes: number | null;
  vcpus: number;
  memoryMiB: number;
  firmware: Firmware;
  /** As its maker said; null when not said (Tern does not guess). */
  os: OsKind | null;
}

export const templateDiskOf = (name: string, pool: string): VolumeRef => ({
  pool,
  path: `templates/${name}/disk.qcow2`,
});

export function templateFromImageTask(deps: {
  templates: TemplateStore;
  images: ImageStore;
  hosts: HostRegistry;
}): TaskKind<FromImageParams> {
  return {
    kind: 'template.from-image',
    onInterrupt: 'fail',
    async run(ctx, p) {
      if (await deps.templates.has(p.name)) throw new TernError('conflict', `template ${p.name} exists`);
      // The image may have been deleted since the request: its file is what is copied.
      await deps.images.row(p.image);
      const agent = deps.hosts.client(p.hostId);
      await ctx.step(`copying image ${p.image} into the template's disk`, 10);
      const disk = await agent.createVolume({
        volume: p.disk,
        format: 'qcow2',
        copyOf: p.source,
        ...(p.sizeBytes ? { sizeBytes: p.sizeBytes } : {}),
      });
      ctx.throwIfCancelled();
      await ctx.step('recording the template', 95);
      await deps.templates.insert(
        {
          name: p.name,
          description: p.description,
          machine: 'q35',
          vcpus: p.vcpus,
          memoryMiB: p.memoryMiB,
          disk: p.disk,
          diskSizeBytes: disk.virtualBytes,
          boot: null,
          firmware: p.firmware,
          os: p.os,
          createdAt: now(),
        },
        p.hostId,
      );
      return { template: p.name, image: p.image, diskSizeBytes: disk.virtualBytes };
    },
    async cleanup(_ctx, p) {
      // Recorded, the copy is the template's; otherwise it would block a retry of the name.
      if (await deps.templates.has(p.name)) return;
      const undo = new Undo();
      await undo.step(`remove ${p.disk.path}`, () => deps.hosts.client(p.hostId).deleteVolume(p.disk));
      undo.done();
    },
  };
}
