import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Replication across sites. On the primary's side target_site_id names the site that keeps
    // the replica (target_host_id and target_pool are then what that site reported, and
    // replica_vm_id its VM's id there). On the replica's side source_site_id names the site
    // whose VM it is (vm_id and source_vm_name are that VM's there): such a row is driven by
    // that site, never scheduled here.
    await db.schema.alterTable('replications').addColumn('target_site_id', 'text').execute();
    await db.schema.alterTable('replications').addColumn('source_site_id', 'text').execute();
    await db.schema.alterTable('replications').addColumn('source_vm_name', 'text').execute();
  },
};
