import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // A failover of a replication, recorded before the replica's disks are lent: the point it
    // runs the replica on, so a failover resumed after a manager restart lends that same point
    // (a planned one does not send another last cycle). A rolled-back failover's row goes; a
    // finished one's stays: the point both sides last shared.
    await db.schema
      .createTable('failovers')
      .addColumn('replication_id', 'text', (c) => c.primaryKey().references('replications.id'))
      .addColumn('point_id', 'text', (c) => c.notNull())
      .addColumn('planned', 'integer', (c) => c.notNull())
      .addColumn('task_id', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};
