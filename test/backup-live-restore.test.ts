/**
 * Live restore with a real QEMU: a tiny VM backed up, then restored as a new VM that runs at
 * once from the backup (its disk a qcow2 overlay on the backup, served over NBD by the agent)
 * while QEMU streams the data in underneath; the restored VM's guest answers, and once the
 * task ends its disk stands alone and holds exactly the bytes backed up. Files are read out
 * of the backup's filesystem without restoring anything.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, startCluster } from './harness.ts';

let c: Cluster;

before(async () => {
  c = await startCluster('backup-live');
});
after(() => c?.stop());

const ok = (t: Task) => {
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  return t;
};
const diskOf = (vm: Vm) => path.join(c.pool, vm.disks[0]!.volume.path);

test('a backup restored live runs at once, and its disk ends holding exactly the bytes backed up', async () => {
  await c.api.request('POST', '/api/v1/backup/datastores', {
    name: 'ds',
    path: path.join(c.dir, 'datastore'),
    encrypt: true,
  });
  const made = await c.api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    template: 'tiny',
    name: 'origin',
  });
  ok(await c.api.settle(made.task));
  // A data disk the guest never mounts, written on the host with a known pattern: its bytes
  // must come back exactly (the root disk boots, and the booted guest writes to it).
  ok(await c.api.task('POST', '/api/v1/vms/origin/disks', { sizeGiB: 0.0625 }));
  let origin = await c.api.request<Vm>('GET', '/api/v1/vms/origin');
  const data = (vm: Vm) => path.join(c.pool, vm.disks[1]!.volume.path);
  for (const [pattern, at] of [
    ['0x5a', '1M'],
    ['0xc3', '17M'],
    ['0x11', '40M'],
  ])
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', `write -P ${pattern} ${at} 3M`, data(origin)]);
  // A stopped VM: its disks cannot change between the backup and the comparison.
  ok(await c.api.task('POST', '/api/v1/backups', { vm: 'origin', datastore: 'ds' }));
  const [backup] = (await c.api.request<{ items: { id: string }[] }>('GET', '/api/v1/backups?vm=origin'))
    .items;
  assert.ok(backup);

  // Files of the backup, read without restoring it: the root filesystem is the whole disk0.
  const files = `/api/v1/backups/origin/${backup.id}/files`;
  const listing = await c.api.request<{
    partition: number | null;
    entries: { name: string; type: string }[];
  }>('POST', `${files}/list`, { path: '/etc' });
  assert.equal(listing.partition, null);
  assert.ok(listing.entries.some((e) => e.name === 'passwd' && e.type === 'file'));
  const res = await c.api.fetch(`${c.api.url}${files}/read`, {
    method: 'POST',
    body: JSON.stringify({ path: '/etc/passwd' }),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${c.api.token}` },
  });
  assert.equal(res.status, 200);
  assert.deepEqual(Buffer.from(await res.arrayBuffer()), fs.readFileSync('guest/rootfs/etc/passwd'));

  const task = ok(
    await c.api.task('POST', `/api/v1/backups/origin/${backup.id}/restore`, { name: 'revived', live: true }),
  );
  const result = task.result as { runningAfterMs: number; streamedBytes: number };
  assert.ok(result.runningAfterMs < 60_000, `running after ${result.runningAfterMs} ms`);
  assert.ok(result.streamedBytes > 0);
  const revived = await c.api.waitVm(
    'revived',
    (v) => v.state === 'running' && v.guest.agent === 'responding',
    180_000,
    'its guest answering',
  );
  ok(await c.api.task('POST', '/api/v1/vms/revived/stop'));
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '--output=json', diskOf(revived)], { encoding: 'utf8' }),
  );
  assert.equal(info['backing-filename'], undefined, 'the restored disk stands alone');
  origin = await c.api.request<Vm>('GET', '/api/v1/vms/origin');
  const same = execFileSync('qemu-img', ['compare', data(origin), data(revived)], { encoding: 'utf8' });
  assert.match(same, /identical/);
});
