import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { openDatabase } from '../db/database.ts';
import { protectSince } from './gc.ts';

test('GC protects everything touched since the oldest backup still running on that datastore began, less an hour', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-gc-'));
  const db = await openDatabase(path.join(dir, 'tern.db'));
  try {
    const task = (
      id: string,
      kind: string,
      state: string,
      datastoreId: string,
      startedAt: string | null,
    ) => ({
      id,
      kind,
      objects: '[]',
      state,
      step: '',
      progress: 0,
      cancelRequested: 0,
      params: JSON.stringify({ datastoreId }),
      result: null,
      error: null,
      createdAt: '2026-12-07T09:00:00.000Z',
      startedAt,
      finishedAt: null,
      requestedBy: null,
    });
    const at = new Date('2026-12-07T12:00:00.000Z');
    assert.equal(
      await protectSince(db, 'ds1', at),
      '2026-12-07T11:00:00.000Z',
      'none running: now less an hour',
    );
    await db
      .insertInto('tasks')
      .values([
        task('a', 'backup.run', 'running', 'ds1', '2026-12-07T10:30:00.000Z'),
        // Queued, not started: from when it was queued.
        task('b', 'backup.job', 'queued', 'ds1', null),
        task('c', 'backup.run', 'running', 'ds2', '2026-12-07T01:00:00.000Z'),
        task('d', 'backup.run', 'succeeded', 'ds1', '2026-12-07T00:00:00.000Z'),
        task('e', 'backup.verify', 'running', 'ds1', '2026-12-07T00:00:00.000Z'),
      ])
      .execute();
    assert.equal(await protectSince(db, 'ds1', at), '2026-12-07T08:00:00.000Z');
    assert.equal(await protectSince(db, 'ds2', at), '2026-12-07T00:00:00.000Z');
  } finally {
    await db.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
