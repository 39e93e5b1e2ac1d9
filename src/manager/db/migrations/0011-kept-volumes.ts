import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Disks kept without a VM are no orphans: the host's report is compared with these.
    await db.schema
      .createTable('kept_volumes')
      .addColumn('pool', 'text', (c) => c.notNull())
      .addColumn('path', 'text', (c) => c.notNull())
      .addColumn('kept_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('kept_volumes_pk', ['pool', 'path'])
      .execute();
  },
};
