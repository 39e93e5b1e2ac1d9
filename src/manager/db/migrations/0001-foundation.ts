import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('hosts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('address', 'text', (c) => c.notNull())
      .addColumn('token', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('last_seen', 'text')
      .addColumn('facts', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('templates')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('description', 'text', (c) => c.notNull())
      .addColumn('machine', 'text', (c) => c.notNull())
      .addColumn('vcpus', 'integer', (c) => c.notNull())
      .addColumn('memory_mib', 'integer', (c) => c.notNull())
      .addColumn('disk_pool', 'text', (c) => c.notNull())
      .addColumn('disk_path', 'text', (c) => c.notNull())
      .addColumn('disk_size_bytes', 'bigint', (c) => c.notNull())
      .addColumn('boot', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('vms')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('host_id', 'text', (c) => c.references('hosts.id'))
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('state_reason', 'text')
      .addColumn('template', 'text')
      .addColumn('spec', 'text', (c) => c.notNull())
      .addColumn('disk_sizes', 'text', (c) => c.notNull())
      .addColumn('guest', 'text', (c) => c.notNull())
      .addColumn('vnc_port', 'integer')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('vms_state').on('vms').column('state').execute();
    await db.schema.createIndex('vms_host').on('vms').column('host_id').execute();
    await db.schema
      .createTable('tasks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('objects', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('step', 'text', (c) => c.notNull())
      .addColumn('progress', 'integer', (c) => c.notNull())
      .addColumn('cancel_requested', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('params', 'text', (c) => c.notNull())
      .addColumn('result', 'text')
      .addColumn('error', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('started_at', 'text')
      .addColumn('finished_at', 'text')
      .execute();
    await db.schema.createIndex('tasks_state').on('tasks').column('state').execute();
    await db.schema.createIndex('tasks_created').on('tasks').column('created_at').execute();
    await db.schema
      .createTable('task_log')
      .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('task_id', 'text', (c) => c.notNull().references('tasks.id').onDelete('cascade'))
      .addColumn('time', 'text', (c) => c.notNull())
      .addColumn('line', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('task_log_task').on('task_log').column('task_id').execute();
    await db.schema
      .createTable('task_locks')
      .addColumn('object', 'text', (c) => c.primaryKey())
      .addColumn('task_id', 'text', (c) => c.notNull().references('tasks.id').onDelete('cascade'))
      .execute();
    await db.schema
      .createTable('api_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull().unique())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text')
      .addColumn('last_used_at', 'text')
      .execute();
    await sql`select 1`.execute(db);
  },
};
