import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Db, openDatabase } from '../db/database.ts';
import type { AuditEntry } from './entry.ts';
import { AuditLog } from './log.ts';
import { RefusalTally } from './refusals.ts';

let db: Db;
before(async () => {
  db = await openDatabase(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tern-audit-')), 'tern.db'));
});
after(async () => {
  await db?.destroy();
});

const refusal = (sourceIp: string, action = 'GET /vms', actor = 'anonymous'): AuditEntry => ({
  actor,
  actorId: null,
  via: 'anonymous',
  action,
  object: action === 'GET /vms' ? 'vms' : 'session',
  sourceIp,
  result: 'denied',
  status: 401,
  detail: 'log in first',
});

test('a flood of anonymous refusals is one record at once and one with the count, per address and minute', async () => {
  const written: AuditEntry[] = [];
  let t = 0;
  const tally = new RefusalTally(
    async (e) => {
      written.push(e);
    },
    (err) => assert.fail(err),
    60_000,
    () => t,
  );
  for (let i = 0; i < 2000; i++) {
    t = i;
    await tally.refused(i % 2 ? refusal('203.0.113.9') : refusal('203.0.113.9', 'POST /session', 'admin'));
  }
  await tally.refused(refusal('198.51.100.7'));
  assert.deepEqual(
    written.map((e) => [e.sourceIp, e.actor]),
    [
      ['203.0.113.9', 'admin'],
      ['203.0.113.9', 'anonymous'],
      ['198.51.100.7', 'anonymous'],
    ],
    'the first of each address and name at once',
  );
  t = 61_000;
  await tally.refused(refusal('203.0.113.9'));
  assert.equal(written.length, 5, 'a new minute: the last one’s tally, and the new first');
  assert.match(
    written[3].detail ?? '',
    /^999 more refused without credentials in the minute since .+: GET \/vms ×999$/,
  );
  assert.equal(written[3].sourceIp, '203.0.113.9');
  assert.equal(written[3].result, 'denied');
  await tally.close();
  assert.equal(written.length, 6);
  assert.equal(written[5].actor, 'admin');
  assert.match(written[5].detail ?? '', /^999 more .*: POST \/session ×999$/);
});

test('an address trying many names has the names past the tenth tallied together', async () => {
  const written: AuditEntry[] = [];
  const tally = new RefusalTally(
    async (e) => {
      written.push(e);
    },
    (err) => assert.fail(err),
  );
  for (let round = 0; round < 3; round++)
    for (let i = 0; i < 50; i++) await tally.refused(refusal('203.0.113.9', 'POST /session', `user-${i}`));
  assert.equal(written.length, 11);
  assert.equal(written[10].actor, 'anonymous');
  assert.match(written[10].detail ?? '', /\(user user-10\)$/);
  await tally.close();
  assert.equal(written.length, 22, 'each name apart has its tally, and the rest one together');
  assert.match(written.at(-1)?.detail ?? '', /^119 more .*; other names tried: user-10, user-11, /);
});

test('the audit log keeps every record until a retention is set, then only what is younger', async () => {
  const log = new AuditLog(db);
  const old = new Date(Date.now() - 40 * 24 * 3600_000).toISOString();
  const young = new Date(Date.now() - 5 * 24 * 3600_000).toISOString();
  for (const at of [old, young])
    await db
      .insertInto('auditLog')
      .values({ ...refusal('192.0.2.1'), at })
      .execute();
  await assert.rejects(db.deleteFrom('auditLog').where('at', '=', old).execute(), /append-only/);
  assert.equal(await log.prune(), 0, 'without a retention nothing goes');
  await log.setRetention(30);
  await assert.rejects(
    db.deleteFrom('auditLog').where('at', '=', young).execute(),
    /append-only/,
    'a record younger than the retention cannot be removed, whoever asks',
  );
  await assert.rejects(db.updateTable('auditLog').set({ actor: 'someone' }).execute(), /append-only/);
  assert.equal(await log.prune(), 1);
  const left = await log.query({ limit: 10 });
  assert.deepEqual(
    left.items.map((r) => [r.action, r.at === young]),
    [
      ['prune audit log', false],
      ['GET /vms', true],
    ],
  );
  assert.match(
    left.items[0].detail ?? '',
    /^1 record from before .+ removed: the audit retention is 30 days$/,
  );
  await log.setRetention(null);
  await assert.rejects(db.deleteFrom('auditLog').execute(), /append-only/);
});
