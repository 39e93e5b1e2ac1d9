/** vm.delete: removes a stopped VM from its host and the inventory, with or without its disks. */
import { TernError } from '../../errors.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from './deps.ts';
import { keepVolumes } from './kept.ts';
import { refuseUnreachable } from './unreachable.ts';

export interface DeleteParams {
  vmId: string;
  keepDisks: boolean;
  force: boolean;
}

export function deleteTask(deps: VmDeps & { secrets: SecretStore }): TaskKind<DeleteParams> {
  return {
    kind: 'vm.delete',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row) return { deleted: p.vmId };
      const spec = vmSpecOf(row);
      const agent = deps.hosts.client(row.hostId!);
      if (
        row.state === 'running' ||
        row.state === 'paused' ||
        row.state === 'unknown' ||
        row.state === 'unreachable'
      ) {
        if (!p.force) refuseUnreachable(row, 'use --force to force it off and delete it');
        if (!p.force)
          throw new TernError('conflict', `VM ${row.name} is ${row.state}; stop it first or use --force`);
        await ctx.step('forcing power off', 10);
        await agent.act(p.vmId, 'kill').catch((err: TernError) => {
          if (err.code !== 'not_found') throw err;
        });
      }
      // A crashed VM's record on the host goes too.
      await agent.forgetVm(p.vmId).catch((err: TernError) => {
        if (err.code !== 'not_found') throw err;
      });
      const volumes = [
        ...(p.keepDisks ? [] : spec.disks.map((d) => d.volume)),
        ...(spec.seed ? [spec.seed] : []),
        // The UEFI variable store is the VM's alone: nothing could boot with it but the VM.
        ...(spec.efiVars ? [spec.efiVars] : []),
      ];
      let i = 0;
      for (const v of volumes) {
        await ctx.step(`removing ${v.path}`, 20 + (60 * i++) / volumes.length);
        await agent.deleteVolume(v);
      }
      await deps.secrets.removeFor(`vm:${p.vmId}`);
      if (p.keepDisks)
        await keepVolumes(
          deps.db,
          spec.disks.map((d) => d.volume),
        );
      await deps.store.remove(p.vmId);
      return { deleted: p.vmId, keptDisks: p.keepDisks ? spec.disks.map((d) => d.volume) : [] };
    },
  };
}
