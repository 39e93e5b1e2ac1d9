/**
 * template.create: seals a stopped VM into a template. Its disk is copied with the backing
 * chain flattened (the template must not depend on the VM or its template), and so are the
 * kernel and initrd of a direct-boot VM. Clones of the template get new identities from their
 * own seeds; the guest regenerates its machine id when it sees a new instance id.
 */
import { TernError } from '../../errors.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';
import { now } from '../db/database.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import type { VmDeps } from '../vms/deps.ts';
import type { TemplateStore } from './templates.ts';

export interface SealParams {
  vmId: string;
  name: string;
  description: string;
}

const dirOf = (name: string) => `templates/${name}`;

function copiesOf(spec: VmSpec, name: string): { from: VolumeRef; to: VolumeRef }[] {
  const pool = spec.disks[0].volume.pool;
  const list = [{ from: spec.disks[0].volume, to: { pool, path: `${dirOf(name)}/disk.qcow2` } }];
  if (spec.boot) {
    list.push({ from: spec.boot.kernel, to: { pool, path: `${dirOf(name)}/kernel` } });
    if (spec.boot.initrd) list.push({ from: spec.boot.initrd, to: { pool, path: `${dirOf(name)}/initrd` } });
  }
  return list;
}

export function sealTask(deps: VmDeps): TaskKind<SealParams> {
  return {
    kind: 'template.create',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const row = await deps.store.row(p.vmId);
      if (row.state !== 'stopped')
        throw new TernError('conflict', `VM ${row.name} is ${row.state}; shut it down first`);
      if (await deps.templates.has(p.name)) throw new TernError('conflict', `template ${p.name} exists`);
      const spec = JSON.parse(row.spec) as VmSpec;
      if (spec.disks.length === 0) throw new TernError('conflict', `VM ${row.name} has no disk`);
      const agent = deps.hosts.client(row.hostId!);
      const copies = copiesOf(spec, p.name);
      let disk = null;
      for (const [i, c] of copies.entries()) {
        ctx.throwIfCancelled();
        await ctx.step(`copying ${c.from.path}`, (i / copies.length) * 90);
        const format = i === 0 ? 'qcow2' : 'raw';
        const info = await agent.createVolume({ volume: c.to, format, copyOf: c.from });
        if (i === 0) disk = info;
      }
      const [diskCopy, kernel, initrd] = copies.map((c) => c.to);
      await deps.templates.insert(
        {
          name: p.name,
          description: p.description,
          machine: spec.machine,
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
          disk: diskCopy,
          diskSizeBytes: disk!.virtualBytes,
          boot: spec.boot ? { kernel, ...(initrd ? { initrd } : {}), cmdline: spec.boot.cmdline } : null,
          createdAt: now(),
        },
        row.hostId!,
      );
      return { template: p.name };
    },
    async cleanup(_ctx, p) {
      if (await deps.templates.has(p.name)) return;
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row?.hostId) return;
      const agent = deps.hosts.client(row.hostId);
      // A copy left behind would block the next attempt with the same name.
      const undo = new Undo();
      for (const c of copiesOf(JSON.parse(row.spec) as VmSpec, p.name))
        await undo.step(`remove ${c.to.path}`, () => agent.deleteVolume(c.to));
      undo.done();
    },
  };
}

export interface TemplateDeleteParams {
  name: string;
}

/** Deleting a template under its linked clones would take their base disk away. */
export async function refuseIfLinked(templates: TemplateStore, name: string): Promise<void> {
  const clones = await templates.linkedClones(name);
  if (clones.length === 0) return;
  const shown = clones.slice(0, 20).join(', ') + (clones.length > 20 ? ', …' : '');
  throw new TernError('conflict', `template ${name} is used by ${clones.length} linked clone(s): ${shown}`, {
    clones,
  });
}

/** template.delete: refused while linked clones still read the template's disk. */
export function templateDeleteTask(deps: VmDeps): TaskKind<TemplateDeleteParams> {
  return {
    kind: 'template.delete',
    onInterrupt: 'resume',
    async run(ctx, p) {
      if (!(await deps.templates.has(p.name))) return { deleted: p.name };
      const t = await deps.templates.get(p.name);
      await refuseIfLinked(deps.templates, p.name);
      const host = await deps.hosts.pickHost();
      const agent = deps.hosts.client(host.id);
      const volumes = [t.disk, ...(t.boot ? [t.boot.kernel, ...(t.boot.initrd ? [t.boot.initrd] : [])] : [])];
      for (const v of volumes) {
        await ctx.step(`removing ${v.path}`);
        await agent.deleteVolume(v);
      }
      await deps.templates.remove(p.name);
      return { deleted: p.name };
    },
  };
}
