import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // A job may prove each backup it makes by booting it (backup.prove) before it counts as done.
    await db.schema
      .alterTable('backup_jobs')
      .addColumn('prove', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
  },
};
