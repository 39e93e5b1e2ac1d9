import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // A VM replicated to another host: its replica is a VM row of its own (replica_vm_id, on
    // target_host_id, stopped, `vms.replica_of` set so nothing starts it by accident), its
    // recovery points live in target_pool of that host. interval_s is the promised RPO;
    // points the older points kept (0–24) one per app_consistent_every_s period (0: never
    // frozen). State: initial, replicating, paused, failed-over, removed; resync_reason says
    // why the next cycle reads the disks whole.
    await db.schema
      .createTable('replications')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('vm_id', 'text', (c) => c.notNull())
      .addColumn('replica_vm_id', 'text', (c) => c.notNull())
      .addColumn('target_host_id', 'text', (c) => c.notNull())
      .addColumn('target_pool', 'text', (c) => c.notNull())
      .addColumn('interval_s', 'integer', (c) => c.notNull())
      .addColumn('points', 'integer', (c) => c.notNull())
      .addColumn('app_consistent_every_s', 'integer', (c) => c.notNull())
      .addColumn('bandwidth', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('resync_reason', 'text')
      .addColumn('last_error', 'text')
      .addColumn('last_cycle_at', 'text')
      .addColumn('last_task_id', 'text')
      .addColumn('reverse_of', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('replications_vm').on('replications').column('vm_id').execute();
    // Committed points only: a row is written once the replica's host said the point is whole.
    await db.schema
      .createTable('recovery_points')
      .addColumn('replication_id', 'text', (c) => c.notNull().references('replications.id'))
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('taken_at', 'text', (c) => c.notNull())
      .addColumn('consistency', 'text', (c) => c.notNull())
      .addColumn('consistency_note', 'text')
      .addColumn('disks', 'text', (c) => c.notNull())
      .addColumn('dirty_bytes', 'integer', (c) => c.notNull())
      .addColumn('sent_bytes', 'integer', (c) => c.notNull())
      .addColumn('task_id', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('recovery_points_pk', ['replication_id', 'id'])
      .execute();
    await db.schema.alterTable('vms').addColumn('replica_of', 'text').execute();
  },
};
