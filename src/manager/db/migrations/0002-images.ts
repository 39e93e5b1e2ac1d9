import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('images')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('format', 'text', (c) => c.notNull())
      .addColumn('source_format', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
      .addColumn('pool', 'text', (c) => c.notNull())
      .addColumn('path', 'text', (c) => c.notNull())
      .addColumn('virtual_bytes', 'bigint', (c) => c.notNull())
      .addColumn('actual_bytes', 'bigint', (c) => c.notNull())
      .addColumn('sha256', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};
