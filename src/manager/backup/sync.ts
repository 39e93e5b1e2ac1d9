/**
 * backup.sync: an offsite copy, the backups of one datastore the other lacks copied there by
 * a host that reaches both (src/backup/datastore/sync.ts), each under the target's key. The
 * copies join the inventory with the figures of their originals, unverified and unproven
 * until checked where they are. Idempotent: resumed after a restart, it goes on where the
 * datastore stands.
 */
import { TernError } from '../../errors.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';
import { bytesText, percentOf, progressText } from './figures.ts';

export interface BackupSyncParams {
  sourceId: string;
  targetId: string;
  /** Only these VMs' backups (ids); all when null. */
  vmIds: string[] | null;
  encryptedOnly: boolean;
}

const logEveryMs = 5_000;

export function backupSyncTask(deps: BackupDeps): TaskKind<BackupSyncParams> {
  return {
    kind: 'backup.sync',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const [source, target] = [await deps.datastores.row(p.sourceId), await deps.datastores.row(p.targetId)];
      if (source.id === target.id)
        throw new TernError('invalid_request', 'a datastore is not synced into itself');
      if (p.encryptedOnly && !target.encrypted)
        throw new TernError(
          'invalid_request',
          `datastore ${target.name} is not encrypted: an encrypted-only copy needs an encrypted target`,
        );
      // A host reaching both: the one of a datastore bound to a host, any for two shared ones.
      const { agent } = await deps.datastores.agentFor(target, source.hostId);
      await ctx.step(`copying the backups of ${source.name} that ${target.name} lacks`, 1);
      const targetAccess = await deps.datastores.access(target);
      let lastLog = 0;
      const result = await agent.backup.syncDatastore(
        {
          source: await deps.datastores.access(source),
          target: targetAccess,
          encryptedOnly: p.encryptedOnly,
          ...(p.vmIds ? { groups: p.vmIds } : {}),
        },
        (r) => {
          if (Date.now() - lastLog < logEveryMs) return;
          lastLog = Date.now();
          ctx.step(progressText(r, 'copied'), percentOf(0, r, r.totalBytes)).catch(() => {});
        },
        ctx.signal,
      );
      // What the target holds, not what this run copied: a run resumed after a kill finds the
      // copies of the run before it there already, still to be recorded.
      const held = new Set((await agent.backup.listBackups(targetAccess)).map((b) => `${b.group}/${b.id}`));
      let recorded = 0;
      for (const original of await deps.backups.list({ datastoreId: source.id })) {
        if (p.vmIds && !p.vmIds.includes(original.vmId)) continue;
        if (!held.has(`${original.vmId}/${original.id}`)) continue;
        if (await deps.backups.recordCopy(original, target.id)) recorded++;
      }
      await ctx.log(
        `${result.copied.length} backup(s) copied (${result.present} there already); ` +
          `${result.chunksRead} chunks read (${bytesText(result.bytesRead)}), ${result.chunksWritten} new in ${target.name} (${bytesText(result.bytesWritten)} stored)`,
      );
      return {
        source: source.name,
        target: target.name,
        copied: result.copied.length,
        recorded,
        present: result.present,
        bytesRead: result.bytesRead,
        bytesWritten: result.bytesWritten,
      };
    },
  };
}
