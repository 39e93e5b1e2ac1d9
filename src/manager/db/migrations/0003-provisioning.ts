import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    await db.schema.alterTable('vms').addColumn('clone', 'text').execute();
    await db.schema.alterTable('vms').addColumn('client_machine_id', 'text').execute();
  },
};
