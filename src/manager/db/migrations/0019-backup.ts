import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // A datastore is a directory a host's agent reaches (host_id null: every host mounts it at
    // `path`). Its key, when encrypted, is a secret (`datastore:<id>`), never a column here.
    await db.schema
      .createTable('datastores')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('path', 'text', (c) => c.notNull())
      .addColumn('host_id', 'text')
      .addColumn('encrypted', 'integer', (c) => c.notNull())
      .addColumn('chunk_size', 'integer', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    // Finished backups only: a row is written once the host said the manifest is committed.
    // The VM may be gone since (no foreign key): its backups are what restores it. `spec` is
    // the VM spec as it was, so a restore can make the VM again anywhere.
    await db.schema
      .createTable('backups')
      .addColumn('datastore_id', 'text', (c) => c.notNull().references('datastores.id'))
      .addColumn('vm_id', 'text', (c) => c.notNull())
      .addColumn('id', 'text', (c) => c.notNull())
      .addColumn('vm_name', 'text', (c) => c.notNull())
      .addColumn('spec', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text')
      .addColumn('task_id', 'text')
      .addColumn('consistency', 'text', (c) => c.notNull())
      .addColumn('consistency_note', 'text')
      .addColumn('disks', 'text', (c) => c.notNull())
      .addColumn('size_bytes', 'integer', (c) => c.notNull())
      .addColumn('changed_bytes', 'integer', (c) => c.notNull())
      .addColumn('read_bytes', 'integer', (c) => c.notNull())
      .addColumn('new_bytes', 'integer', (c) => c.notNull())
      .addColumn('manifest_sha256', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('verified_at', 'text')
      .addColumn('verify_ok', 'integer')
      .addColumn('verify_problems', 'text')
      .addColumn('proven_at', 'text')
      .addColumn('proof', 'text')
      .addPrimaryKeyConstraint('backups_pk', ['datastore_id', 'vm_id', 'id'])
      .execute();
    await db.schema.createIndex('backups_vm').on('backups').column('vm_id').execute();
    // A job backs up a selection (named VMs, placement groups, projects) on a schedule, keeps
    // what its retention says, with bounds on how many backups run at once per host and per
    // datastore, and on the bytes per second each reads.
    await db.schema
      .createTable('backup_jobs')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('datastore_id', 'text', (c) => c.notNull().references('datastores.id'))
      .addColumn('selection', 'text', (c) => c.notNull())
      .addColumn('schedule', 'text', (c) => c.notNull())
      .addColumn('retention', 'text', (c) => c.notNull())
      .addColumn('concurrency_per_host', 'integer', (c) => c.notNull())
      .addColumn('concurrency_per_datastore', 'integer', (c) => c.notNull())
      .addColumn('bandwidth', 'integer', (c) => c.notNull())
      .addColumn('enabled', 'integer', (c) => c.notNull())
      .addColumn('last_run_at', 'text')
      .addColumn('next_run_at', 'text')
      .addColumn('last_result', 'text')
      .addColumn('last_task_id', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
};
