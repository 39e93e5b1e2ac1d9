import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    await db.schema.alterTable('templates').addColumn('generalization', 'text').execute();
    await db.schema.alterTable('templates').addColumn('risk', 'text').execute();
    // Until now a VM was sealed as it was, into templates/<name>/: those templates are not
    // generalized. Others (the tiny guest's) were not sealed by Tern.
    await db
      .updateTable('templates')
      .set({ generalization: 'none', risk: 'clones share machine-id and SSH host keys' })
      .where(sql<boolean>`disk_path = 'templates/' || name || '/disk.qcow2'`)
      .execute();
  },
};
