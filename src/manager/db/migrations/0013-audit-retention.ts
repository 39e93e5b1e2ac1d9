import { type Migration, sql } from 'kysely';
import type { Db } from './db.ts';

export const migration: Migration = {
  async up(db: Db) {
    // The one delete the audit log allows: records older than the retention the operator set
    // (settings key `audit`, at least a day), never any when none is set. Updates stay refused.
    await sql`DROP TRIGGER audit_log_no_delete`.execute(db);
    await sql`CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
      WHEN NOT coalesce(OLD.at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-' || (
        SELECT CAST(json_extract(value, '$.retentionDays') AS INTEGER) FROM settings
        WHERE key = 'audit' AND json_extract(value, '$.retentionDays') >= 1) || ' days'), 0)
      BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: only records older than its retention may go'); END`.execute(
      db,
    );
  },
};
