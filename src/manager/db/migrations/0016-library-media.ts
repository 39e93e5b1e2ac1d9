import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Templates say which firmware their clones boot with and what OS they hold.
    await db.schema
      .alterTable('templates')
      .addColumn('firmware', 'text', (c) => c.notNull().defaultTo('bios'))
      .execute();
    await db.schema.alterTable('templates').addColumn('os_kind', 'text').execute();
    // A VM made from an image: a linked clone on it keeps the image from being deleted.
    await db.schema.alterTable('vms').addColumn('image', 'text').execute();
    await db.schema.createIndex('vms_image').on('vms').column('image').execute();
  },
};
