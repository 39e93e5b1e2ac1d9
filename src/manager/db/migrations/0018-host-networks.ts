import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // What each host last said of each network: placement reads it, also right after a
    // manager restart, before the hosts have been given their networks again.
    await db.schema
      .createTable('host_networks')
      .addColumn('host_id', 'text', (c) => c.notNull().references('hosts.id').onDelete('cascade'))
      .addColumn('network_id', 'text', (c) => c.notNull().references('networks.id').onDelete('cascade'))
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('dhcp', 'text', (c) => c.notNull())
      .addColumn('ports', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('host_networks_pk', ['host_id', 'network_id'])
      .execute();
  },
};
