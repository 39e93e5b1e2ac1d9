import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // People: local users have a scrypt hash; LDAP users only a record of their last login.
    await db.schema
      .createTable('users')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('display_name', 'text')
      .addColumn('source', 'text', (c) => c.notNull())
      .addColumn('password_hash', 'text')
      .addColumn('role', 'text')
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('last_login_at', 'text')
      .execute();
    // A group gives its members a role; `ldap_group` maps a directory group onto it.
    await db.schema
      .createTable('user_groups')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('role', 'text', (c) => c.notNull())
      .addColumn('ldap_group', 'text')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('user_group_members')
      .addColumn('group_name', 'text', (c) => c.notNull().references('user_groups.name').onDelete('cascade'))
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addPrimaryKeyConstraint('user_group_members_pk', ['group_name', 'user_id'])
      .execute();
    await db.schema
      .createTable('sessions')
      .addColumn('hash', 'text', (c) => c.primaryKey())
      .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('last_seen_at', 'text', (c) => c.notNull())
      .addColumn('source_ip', 'text')
      .execute();
    // Tokens belong to a user and may narrow its rights to some permissions.
    await db.schema.alterTable('api_tokens').addColumn('user_id', 'text').execute();
    await db.schema.alterTable('api_tokens').addColumn('scopes', 'text').execute();
    await db.schema.alterTable('api_tokens').addColumn('revoked_at', 'text').execute();
    // Projects: quotas, and who may create in them (users or groups).
    await db.schema
      .createTable('projects')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
      .addColumn('max_vms', 'integer')
      .addColumn('max_vcpus', 'integer')
      .addColumn('max_memory_mib', 'integer')
      .addColumn('max_disk_bytes', 'bigint')
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('project_members')
      .addColumn('project', 'text', (c) => c.notNull().references('projects.name').onDelete('cascade'))
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('member', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('project_members_pk', ['project', 'kind', 'member'])
      .execute();
    await db.schema.alterTable('vms').addColumn('owner_id', 'text').execute();
    await db.schema.alterTable('vms').addColumn('project', 'text').execute();
    await db.schema.createIndex('vms_owner').on('vms').column('owner_id').execute();
    await db.schema.createIndex('vms_project').on('vms').column('project').execute();
    await db.schema.alterTable('tasks').addColumn('requested_by', 'text').execute();
    // Append-only: the triggers refuse to change or remove a record, whoever asks.
    await db.schema
      .createTable('audit_log')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('at', 'text', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addColumn('actor_id', 'text')
      .addColumn('via', 'text', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('object', 'text', (c) => c.notNull())
      .addColumn('source_ip', 'text')
      .addColumn('result', 'text', (c) => c.notNull())
      .addColumn('status', 'integer')
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
    await sql`CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`.execute(
      db,
    );
    await sql`CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END`.execute(
      db,
    );
    // Secrets: each value under its own data key, wrapped by a key-encryption key that
    // lives in the key store, never here.
    await db.schema
      .createTable('secrets')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull().unique())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('object', 'text')
      .addColumn('owner_id', 'text')
      .addColumn('kek_id', 'text', (c) => c.notNull())
      .addColumn('envelope', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('updated_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema.createIndex('secrets_kek').on('secrets').column('kek_id').execute();
  },
};
