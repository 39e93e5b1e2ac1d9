import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { sql } from 'kysely';
import { TernError } from '../../errors.ts';
import { openDatabase } from './database.ts';
import { DiskSpace } from './disk-space.ts';

test('a database that cannot grow says the manager disk is full, not "cannot rollback"', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-space-'));
  const file = path.join(dir, 'tern.db');
  const space = new DiskSpace(file);
  const db = await openDatabase(file, space);
  try {
    // SQLite answers SQLITE_FULL when the page limit is reached, as it does on a full disk.
    const { rows } = await sql<{ pageCount: number }>`PRAGMA page_count`.execute(db);
    await sql.raw(`PRAGMA max_page_count = ${rows[0].pageCount}`).execute(db);
    const big = 'x'.repeat(64 * 1024);
    const err = await db
      .transaction()
      .execute(async (tx) => {
        await tx.insertInto('settings').values({ key: 'a', value: big }).execute();
        await tx.insertInto('settings').values({ key: 'b', value: big }).execute();
      })
      .then(
        () => null,
        (e: unknown) => e,
      );
    assert.ok(err instanceof TernError, `a TernError, not ${String(err)}`);
    assert.equal(err.code, 'manager_disk_full');
    assert.equal(err.status, 507);
    assert.match(err.message, /the manager's disk is full/);
    assert.ok(space.fullSince, 'the space watch knows');
    // Reads still answer.
    assert.ok(Array.isArray(await db.selectFrom('settings').selectAll().execute()));
  } finally {
    space.close();
    await db.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
