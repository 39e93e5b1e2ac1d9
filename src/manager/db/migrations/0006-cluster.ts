import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Hosts are known by the certificate they were issued at join, no longer by a shared token.
    await db.schema.alterTable('hosts').dropColumn('token').execute();
    await db.schema.alterTable('hosts').addColumn('cert_fingerprint', 'text').execute();
    await db.schema.alterTable('hosts').addColumn('cert_serial', 'text').execute();
    await db.schema.alterTable('hosts').addColumn('cert_expires_at', 'text').execute();
    await db.schema.alterTable('hosts').addColumn('joined_at', 'text').execute();
    await db.schema
      .createTable('join_tokens')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('host_name', 'text', (c) => c.notNull())
      .addColumn('secret_hash', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .addColumn('expires_at', 'text', (c) => c.notNull())
      .addColumn('used_at', 'text')
      .execute();
    await db.schema
      .createTable('revoked_certificates')
      .addColumn('serial', 'text', (c) => c.primaryKey())
      .addColumn('fingerprint', 'text', (c) => c.notNull())
      .addColumn('host_name', 'text', (c) => c.notNull())
      .addColumn('revoked_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createIndex('revoked_certificates_fingerprint')
      .on('revoked_certificates')
      .column('fingerprint')
      .execute();
    await db.schema
      .alterTable('vms')
      .addColumn('cpu_mode', 'text', (c) => c.notNull().defaultTo('compat'))
      .execute();
    await db.schema
      .createTable('placement_groups')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('kind', 'text', (c) => c.notNull())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
    await db.schema
      .createTable('placement_group_members')
      .addColumn('group_name', 'text', (c) =>
        c.notNull().references('placement_groups.name').onDelete('cascade'),
      )
      .addColumn('vm_id', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('placement_group_members_pk', ['group_name', 'vm_id'])
      .execute();
    // Which host a template was made on: its disk is reachable from there (and from every
    // host, when its pool is shared).
    await db.schema.alterTable('templates').addColumn('host_id', 'text').execute();
    await sql`UPDATE templates SET host_id = (SELECT id FROM hosts ORDER BY created_at LIMIT 1)`.execute(db);
    await db.schema
      .createTable('settings')
      .addColumn('key', 'text', (c) => c.primaryKey())
      .addColumn('value', 'text', (c) => c.notNull())
      .execute();
  },
};
