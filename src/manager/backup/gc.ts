/**
 * backup.gc: a host removes the chunks of a datastore no backup names. A backup running now
 * may hold chunks no manifest names yet: every chunk it wrote or found was touched after it
 * began, so nothing touched since the start of the oldest backup running on this datastore
 * (less a margin for clocks) is removed. Resumed after a restart, it collects again.
 */
import type { Db } from '../db/database.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';
import { bytesText, percentOf, progressText } from './figures.ts';
import { runningBackups } from './running.ts';

export interface BackupGcParams {
  datastoreId: string;
}

/** The margin for hosts' clocks and a backup's first inserts before its task says it started. */
const marginMs = 60 * 60 * 1000;
/** Nothing touched since this time may go: the oldest backup running on the datastore began after it. */
export async function protectSince(db: Db, datastoreId: string, at = new Date()): Promise<string> {
  const oldest = Math.min(at.getTime(), ...(await runningBackups(db, datastoreId)));
  return new Date(oldest - marginMs).toISOString();
}

export function backupGcTask(deps: BackupDeps): TaskKind<BackupGcParams> {
  return {
    kind: 'backup.gc',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const ds = await deps.datastores.row(p.datastoreId);
      const { agent } = await deps.datastores.agentFor(ds);
      const since = await protectSince(deps.db, ds.id);
      await ctx.step(`collecting garbage in ${ds.name} (keeping anything touched since ${since})`, 1);
      let last = 0;
      const r = await agent.backup.collectGarbage(
        { datastore: await deps.datastores.access(ds), protectSince: since },
        (x) => {
          if (Date.now() - last < 5_000)
            return void ctx.progress(percentOf(0, x, x.totalBytes)).catch(() => {});
          last = Date.now();
          ctx.step(progressText(x, 'marked'), percentOf(0, x, x.totalBytes)).catch(() => {});
        },
        ctx.signal,
      );
      await ctx.log(
        `${r.chunksRemoved} chunk(s) removed (${bytesText(r.bytesRemoved)}), ${r.chunksKept} kept (${bytesText(r.bytesKept)}), ` +
          `${r.chunksProtected} unnamed kept as recently touched, ${r.temporariesRemoved} temporaries removed`,
      );
      return { datastore: ds.name, ...r };
    },
  };
}
