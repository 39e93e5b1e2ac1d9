/**
 * The restore test with real QEMU: a running tiny guest backed up through the manager, then
 * proven by `tern backup prove`: its backup, restored as a throwaway VM without a NIC, boots and
 * its guest agent answers; the time to a running guest is recorded, the throwaway VM and its
 * QEMU are gone, the backup is listed proven.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { backupRoutes } from '../src/wire/api/backups.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuGone, runTern, startCluster } from './harness.ts';

let c: Cluster;
const tern = (...args: string[]) => runTern(args, { env: c.api.cliEnv });

before(async () => {
  c = await startCluster('backup-prove');
});

after(async () => {
  await c?.stop();
});

test('a backup of a running tiny guest boots as a throwaway VM without a NIC, its guest agent answers, and it is proven', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'src', template: 'tiny', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('src', (v) => v.guest.agent === 'responding', 120_000, 'answering');
  const ds = await tern('backup', 'datastore', 'create', 'ds', '--path', `${c.dir}/ds`, '--host', 'local');
  assert.equal(ds.code, 0, ds.stderr);
  const run = await tern('backup', 'run', 'src', '--datastore', 'ds');
  assert.equal(run.code, 0, run.stderr);
  const [b] = (await c.api.call(backupRoutes.list, { query: { vm: 'src' } })).items;
  assert.equal(b.proven, null);

  const r = await tern('backup', 'prove', `src/${b.id}`, '--timeout', '180', '-o', 'json');
  assert.equal(r.code, 0, r.stderr);
  const task = JSON.parse(r.stdout) as Task;
  assert.equal(task.state, 'succeeded');
  const proof = task.result as { secondsToGuest: number; secondsTotal: number; guestOs: string | null };
  assert.ok(proof.secondsToGuest > 0 && proof.secondsTotal >= proof.secondsToGuest, JSON.stringify(proof));
  const log = (await c.api.request<Task>('GET', `/api/v1/tasks/${task.id}?log=true`)).log ?? [];
  const restoreTask = /restore task (\S+)/.exec(log.map((l) => l.line).join('\n'))?.[1];
  assert.ok(restoreTask, 'the restore ran as a task of its own');
  // The throwaway VM's id, from its restore's parameters as the API shows its task's objects.
  const restore = await c.api.request<Task>('GET', `/api/v1/tasks/${restoreTask}`);
  const vmId = restore.objects.find((o) => o.startsWith('vm:'))?.slice(3);
  assert.ok(vmId);
  await qemuGone(vmId);
  const left = (await c.api.request<{ items: Vm[] }>('GET', '/api/v1/vms?name=prove-')).items;
  assert.deepEqual(left, []);
  const proven = await c.api.call(backupRoutes.show, { params: { vm: 'src', backup: b.id } });
  assert.ok(proven.proven, 'listed proven');
  const list = await tern('backup', 'list', 'src');
  assert.equal(list.code, 0, list.stderr);
  console.log(
    `restore test: guest agent answering ${proof.secondsToGuest} s after the start, ${proof.secondsTotal} s with the restore`,
  );
});
