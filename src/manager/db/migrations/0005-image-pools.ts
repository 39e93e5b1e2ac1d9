import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('image_pools')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('template', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text', (c) => c.notNull())
      .addColumn('disk_pool', 'text', (c) => c.notNull())
      .addColumn('cache', 'text', (c) => c.notNull())
      .addColumn('max_unavailable_percent', 'integer', (c) => c.notNull())
      .addColumn('chain_limit', 'integer', (c) => c.notNull())
      .addColumn('production', 'integer', (c) => c.notNull())
      .addColumn('previous', 'integer')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('image_pool_versions')
      .addColumn('pool', 'text', (c) => c.notNull().references('image_pools.name').onDelete('cascade'))
      .addColumn('number', 'integer', (c) => c.notNull())
      .addColumn('parent', 'integer')
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('maintenance_vm', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('image_pool_versions_pk', ['pool', 'number'])
      .execute();
    await db.schema.alterTable('vms').addColumn('image_pool', 'text').execute();
    await db.schema.alterTable('vms').addColumn('pool_version', 'integer').execute();
  },
};
