/** template.delete: a template's volumes and record removed, never under its linked clones. */
import { TernError } from '../../errors.ts';
import type { HostRegistry } from '../hosts/registry.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { TemplateStore } from './templates.ts';

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
export function templateDeleteTask(deps: {
  templates: TemplateStore;
  hosts: HostRegistry;
}): TaskKind<TemplateDeleteParams> {
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
