/**
 * Volumes kept on purpose without a VM (vm delete --keep-disks, a disk removed with --keep, an
 * adopted orphan): recorded so that the host reports of them are not taken for orphans.
 */
import type { VolumeRef } from '../../wire/vm.ts';
import { type Db, now } from '../db/database.ts';

export async function keepVolumes(db: Db, volumes: readonly VolumeRef[]): Promise<void> {
  for (const v of volumes) {
    await db
      .insertInto('keptVolumes')
      .values({ pool: v.pool, path: v.path, keptAt: now() })
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

/** Every kept volume, as `pool:path`. */
export async function keptVolumes(db: Db): Promise<Set<string>> {
  const rows = await db.selectFrom('keptVolumes').select(['pool', 'path']).execute();
  return new Set(rows.map((r) => `${r.pool}:${r.path}`));
}
