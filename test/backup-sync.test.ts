/**
 * Offsite copies through the manager, against simulated hosts whose backups are real chunk
 * files: a VM's backups in one datastore copied into an encrypted second one under its own
 * key, listed there, a second sync copying only the new backup; an encrypted-only copy into a
 * plain datastore refused.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Backup, backupRoutes } from '../src/wire/api/backups.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;

before(async () => {
  c = await startSimCluster(1);
});
after(() => c?.close());

const ok = (t: Task) => {
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  return t;
};
const list = async (datastore: string) =>
  (await c.api.request<{ items: Backup[] }>('GET', `${backupRoutes.list.path}?datastore=${datastore}`)).items;

test('backups copy to an encrypted offsite datastore under its own key; the next sync copies only what is new', async () => {
  for (const [name, encrypt] of [
    ['main', false],
    ['offsite', true],
    ['plain', false],
  ] as const) {
    const dir = path.join(c.dir, `ds-${name}`);
    await c.api.request('POST', '/api/v1/backup/datastores', {
      name,
      path: dir,
      ...(encrypt ? { encrypt } : {}),
    });
  }
  const created = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    template: 'sim',
    name: 'ledger',
  });
  ok(await c.api.settle(created.task));
  ok(await c.api.task('POST', '/api/v1/vms/ledger/start'));
  ok(await c.api.task('POST', '/api/v1/backups', { vm: 'ledger', datastore: 'main' }));

  const first = ok(
    await c.api.task('POST', '/api/v1/backup/datastores/main/sync', {
      target: 'offsite',
      encryptedOnly: true,
    }),
  );
  assert.equal((first.result as { copied: number }).copied, 1);
  const [original] = await list('main');
  const [copy] = await list('offsite');
  assert.equal(copy?.id, original?.id);
  assert.equal(copy?.sizeBytes, original?.sizeBytes);
  // Under the offsite key: no chunk file of one datastore is named as in the other.
  const names = (dir: string) =>
    new Set(
      (
        fs.readdirSync(path.join(c.dir, dir, 'chunks'), {
          recursive: true,
          withFileTypes: true,
        }) as fs.Dirent[]
      )
        .filter((d) => d.isFile())
        .map((d) => d.name),
    );
  const [a, b] = [names('ds-main'), names('ds-offsite')];
  assert.ok(b.size > 0 && [...b].every((n) => !a.has(n)));

  c.sim.hosts[0]!.driver.writeDisk(created.vm.id, 0, 0, 4096);
  ok(await c.api.task('POST', '/api/v1/backups', { vm: 'ledger', datastore: 'main' }));
  const second = ok(await c.api.task('POST', '/api/v1/backup/datastores/main/sync', { target: 'offsite' }));
  const r = second.result as { copied: number; present: number; bytesRead: number };
  assert.deepEqual([r.copied, r.present], [1, 1]);
  const mainSize = (await list('main')).reduce((n, x) => n + x.sizeBytes, 0);
  assert.ok(r.bytesRead < mainSize / 4, `the second sync read ${r.bytesRead} bytes: only the changed chunks`);
  assert.equal((await list('offsite')).length, 2);

  const refused = await c.api.task('POST', '/api/v1/backup/datastores/main/sync', {
    target: 'plain',
    encryptedOnly: true,
  });
  assert.equal(refused.state, 'failed');
  assert.match(refused.error?.message ?? '', /not encrypted/);
  assert.equal((await list('plain')).length, 0);
});
