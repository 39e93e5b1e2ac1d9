import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import Fastify from 'fastify';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { FixedIndex } from '../../backup/datastore/fixed-index.ts';
import { registerRoutes } from '../../http/declared-routes.ts';
import { installErrorHandling } from '../../http/errors.ts';
import { validation } from '../../http/validation.ts';
import { agentDatastoreRoutes } from '../../wire/agent-datastore-routes.ts';
import { datastoreHandlers } from './datastore-handlers.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-ds-routes-'));
after(() => fs.rm(root, { recursive: true, force: true }));

const app = Fastify({ ...validation });
installErrorHandling(app);
registerRoutes(app, agentDatastoreRoutes, datastoreHandlers({}));
after(() => app.close());

async function post(url: string, payload: unknown) {
  const res = await app.inject({ method: 'POST', url, payload: payload as object });
  return {
    status: res.statusCode,
    body: res.json() as Record<string, unknown> & { error?: { code: string } },
  };
}

test('a datastore made, opened, listed and a backup forgotten through the agent routes', async () => {
  const key = randomBytes(32).toString('base64');
  const datastore = { path: path.join(root, 'enc'), key };
  const made = await post('/agent/v1/datastores/create', { datastore });
  assert.equal(made.status, 200);
  assert.equal(made.body.encrypted, true);
  assert.equal(made.body.path, datastore.path);
  assert.ok((made.body.totalBytes as number) > 0);
  assert.equal((await post('/agent/v1/datastores/create', { datastore })).status, 409);

  const status = await post('/agent/v1/datastores/status', { datastore });
  assert.equal(status.status, 200);
  const wrong = await post('/agent/v1/datastores/status', {
    datastore: { ...datastore, key: randomBytes(32).toString('base64') },
  });
  assert.equal(wrong.status, 400);
  assert.match(JSON.stringify(wrong.body), /not the key given/);
  const none = await post('/agent/v1/datastores/status', {
    datastore: { path: path.join(root, 'x'), key: null },
  });
  assert.equal(none.body.error?.code, 'not_found');
  const climbing = await post('/agent/v1/datastores/status', {
    datastore: { path: `${root}/../etc`, key: null },
  });
  assert.equal(climbing.status, 400);

  const ds = await Datastore.open(datastore.path, { key: Buffer.from(key, 'base64') });
  const index = new FixedIndex(8192, 4096);
  for (let i = 0; i < 2; i++) index.setDigest(i, (await ds.chunks.insert(Buffer.alloc(4096, i))).digest);
  await ds.commitBackup('vm-1', '2026-12-07T10-00-00Z', [{ name: 'disk0', index }], { vm: 'web' });
  const listed = await post('/agent/v1/datastores/backups', { datastore, group: 'vm-1' });
  assert.equal(listed.status, 200);
  const [b] = listed.body.backups as { id: string; labels: object; disks: object[] }[];
  assert.equal(b?.id, '2026-12-07T10-00-00Z');
  assert.deepEqual(b?.labels, { vm: 'web' });
  assert.deepEqual(b?.disks, [{ name: 'disk0', sizeBytes: 8192, chunkSize: 4096 }]);

  const gone = await post('/agent/v1/datastores/forget', {
    datastore,
    group: 'vm-1',
    id: '2026-12-07T10-00-00Z',
  });
  assert.deepEqual(gone.body, { ok: true });
  assert.deepEqual((await post('/agent/v1/datastores/backups', { datastore })).body.backups, []);
  const bad = await post('/agent/v1/datastores/forget', { datastore, group: '..', id: 'x' });
  assert.equal(bad.status, 400);
});
