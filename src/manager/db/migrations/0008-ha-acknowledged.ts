import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // The protected VMs a host confirmed it enforces (a JSON array of VM ids): only those
    // does its fence kill, so only those may restart elsewhere when it fails.
    await db.schema.alterTable('hosts').addColumn('ha_acknowledged', 'text').execute();
  },
};
