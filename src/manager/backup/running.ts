/** The backups under way on a datastore, as the task table tells (GC and removal look). */
import type { Db } from '../db/database.ts';

/** Task kinds that write into a datastore, with its id in their parameters. */
const writers = ['backup.run', 'backup.job'];

/** When each backup task still queued or running on the datastore began (or was queued). */
export async function runningBackups(db: Db, datastoreId: string): Promise<number[]> {
  const rows = await db
    .selectFrom('tasks')
    .select(['params', 'createdAt', 'startedAt'])
    .where('kind', 'in', writers)
    .where('state', 'in', ['queued', 'running'])
    .execute();
  return rows
    .filter((t) => (JSON.parse(t.params) as { datastoreId?: string }).datastoreId === datastoreId)
    .map((t) => Date.parse(t.startedAt ?? t.createdAt));
}
