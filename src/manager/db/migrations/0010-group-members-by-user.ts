import type { Migration } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // Every authenticated request looks up its user's groups.
    await db.schema
      .createIndex('user_group_members_user')
      .on('user_group_members')
      .column('user_id')
      .execute();
  },
};
