import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Each host renews its HA lease in its own slot of the statefile.
    await db.schema.alterTable('hosts').addColumn('ha_slot', 'integer').execute();
    await sql`UPDATE hosts SET ha_slot = (SELECT COUNT(*) FROM hosts h2 WHERE h2.created_at < hosts.created_at OR (h2.created_at = hosts.created_at AND h2.id < hosts.id))`.execute(
      db,
    );
    await db.schema.alterTable('vms').addColumn('ha_policy', 'text').execute();
  },
};
