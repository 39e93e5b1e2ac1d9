import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // A test failover's VM: a copy of a replica's recovery point (its disks lent by the point,
    // which stays pinned while they exist) on an isolated network. One at a time per replication.
    // network_id: the isolated network the test made for itself, removed with it; null when the
    // operator named one. The row goes with its VM (cascade), whoever deletes it.
    await db.schema
      .createTable('replica_tests')
      .addColumn('vm_id', 'text', (c) => c.primaryKey().references('vms.id').onDelete('cascade'))
      .addColumn('replication_id', 'text', (c) => c.notNull().references('replications.id'))
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('network_id', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('replica_tests_replication')
      .unique()
      .on('replica_tests')
      .column('replication_id')
      .execute();
  },
};
