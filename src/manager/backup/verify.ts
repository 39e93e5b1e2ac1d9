/**
 * backup.verify: a host re-reads the chunks of the chosen backups and checks each against its
 * name; each backup's outcome is recorded (when, ok, the problems named). A backup that fails
 * verification fails the task, after every outcome is recorded: a damaged backup is never
 * reported as a success. Resumed after a restart, it verifies again.
 */
import { TernError } from '../../errors.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';
import { percentOf, progressText } from './figures.ts';

export interface BackupVerifyParams {
  datastoreId: string;
  backups: { vmId: string; id: string }[];
}

export function backupVerifyTask(deps: BackupDeps): TaskKind<BackupVerifyParams> {
  return {
    kind: 'backup.verify',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const ds = await deps.datastores.row(p.datastoreId);
      const { agent } = await deps.datastores.agentFor(ds);
      await ctx.step(`verifying ${p.backups.length} backup(s) in ${ds.name}`, 1);
      let last = 0;
      const result = await agent.backup.verifyBackups(
        {
          datastore: await deps.datastores.access(ds),
          backups: p.backups.map((b) => ({ group: b.vmId, id: b.id })),
        },
        (r) => {
          if (Date.now() - last < 5_000)
            return void ctx.progress(percentOf(0, r, r.totalBytes)).catch(() => {});
          last = Date.now();
          ctx.step(progressText(r, 'checked'), percentOf(0, r, r.totalBytes)).catch(() => {});
        },
        ctx.signal,
      );
      const failed: string[] = [];
      for (const b of result.backups) {
        await deps.backups.setVerified({ datastoreId: ds.id, vmId: b.group, id: b.id }, b.ok, b.problems);
        if (!b.ok) {
          failed.push(`${b.group}/${b.id}`);
          for (const problem of b.problems) await ctx.log(`${b.group}/${b.id}: ${problem}`);
        }
      }
      if (failed.length > 0)
        throw new TernError(
          'storage_error',
          `${failed.length} of ${result.backups.length} backup(s) in ${ds.name} failed verification: ${failed.join(', ')}`,
          {
            failed,
          },
        );
      return {
        datastore: ds.name,
        backups: result.backups.length,
        chunks: result.chunksChecked,
        bytes: result.bytesChecked,
      };
    },
  };
}
