import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Half-done HA restarts were told by their state reason, which any report overwrites.
    await db.schema.alterTable('vms').addColumn('ha_restart_from', 'text').execute();
    // Any unfinished failover finished every such restart; one of them now finishes these.
    const failover = await db
      .selectFrom('tasks')
      .select('params')
      .where('kind', '=', 'ha.failover')
      .where('state', 'in', ['queued', 'running'])
      .executeTakeFirst();
    const from = failover ? (JSON.parse(failover.params) as { hostId?: string }).hostId : undefined;
    if (from) {
      await db
        .updateTable('vms')
        .set({ ha_restart_from: from })
        .where('state_reason', '=', 'restarting: its host failed')
        .where('state', '=', 'stopped')
        .execute();
    }
  },
};
