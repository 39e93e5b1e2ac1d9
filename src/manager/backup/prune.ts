/**
 * backup.prune: one backup forgotten. The inventory lets go of it first, then the host removes
 * its manifest and indexes (its chunks go at the next garbage collection): a crash in between
 * leaves a backup the inventory does not list (GC keeps its chunks; listing the datastore shows
 * it), never one it lists that a restore could not find. Resumed after a restart, it finishes.
 */
import type { TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';

export interface BackupPruneParams {
  datastoreId: string;
  vmId: string;
  backupId: string;
}

export function backupPruneTask(deps: BackupDeps): TaskKind<BackupPruneParams> {
  return {
    kind: 'backup.prune',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const ds = await deps.datastores.row(p.datastoreId);
      const row = await deps.backups.find(p.datastoreId, p.vmId, p.backupId);
      await deps.backups.remove(p.datastoreId, p.vmId, p.backupId);
      await ctx.step(`removing backup ${p.backupId} of ${row?.vmName ?? p.vmId} from ${ds.name}`, 50);
      const { agent } = await deps.datastores.agentFor(ds);
      await agent.backup.forgetBackup(await deps.datastores.access(ds), p.vmId, p.backupId);
      return { datastore: ds.name, vm: row?.vmName ?? p.vmId, backup: p.backupId };
    },
  };
}
