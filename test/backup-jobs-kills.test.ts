/**
 * A backup job and a restore test killed with the manager (SIGKILL of a real manager process
 * driving a simulated host in this process): after the restart the job's run has failed, said
 * so on the job and in an alert, its VM backup failed and left nothing the inventory does not
 * list, and the next run succeeds and clears the alert; the restore test has failed, its
 * throwaway VM is gone from host and inventory, and the backup stays unproven.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { SimHost, SimHosts } from '../src/agent/sim/cluster.ts';
import type { Alert } from '../src/wire/alert.ts';
import { backupJobRoutes } from '../src/wire/api/backup-jobs.ts';
import { type Backup, backupRoutes } from '../src/wire/api/backups.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type TestApi, tempDir } from './harness.ts';
import { KillableSimCluster, until } from './sim-harness.ts';

const dir = tempDir('tern-backup-jobs-kills');
let c: KillableSimCluster;
let api: TestApi;
let sim: SimHosts;
let host: SimHost;

const ended = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';
const backupsOf = async (vm: string): Promise<Backup[]> =>
  (await api.call(backupRoutes.list, { query: { vm } })).items;
const activeAlerts = async () => (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items;

before(async () => {
  c = await KillableSimCluster.start(dir, 1, 50);
  api = c.api;
  sim = c.sim!;
  host = sim.hosts[0];
  await api.call(backupRoutes.createDatastore, { body: { name: 'ds', path: path.join(dir, 'ds') } });
  for (const name of ['k1', 'k2']) {
    const t = await api.task('POST', '/api/v1/vms', { name, diskGiB: 64 / 1024, start: true });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  }
});

after(async () => {
  await c?.close();
});

test('manager SIGKILLed during a job run: the run fails with an alert, its VM backup leaves nothing unlisted, the next run succeeds', async () => {
  const job = await api.call(backupJobRoutes.create, {
    body: { name: 'kj', datastore: 'ds', schedule: '02-29 03:00', vms: ['k1', 'k2'] },
  });
  host.driver.faults.hangNext('backupVm', 1);
  const { task } = await api.call(backupJobRoutes.run, { params: { job: 'kj' } });
  await until('a backup hanging on the host', 20_000, async () =>
    host.driver.faults.hanging === 1 ? true : undefined,
  );
  await c.manager.kill();
  host.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'failed');
  assert.match(done.error?.message ?? '', /manager stopped/);
  const shown = await api.call(backupJobRoutes.show, { params: { job: 'kj' } });
  assert.equal(shown.lastResult?.state, 'failed');
  const alert = (await activeAlerts()).find((a) => a.id === `backup-job:${job.id}:failed`);
  assert.ok(alert, 'an interrupted run is alerted as a failure');
  const runs = (await api.request<{ items: Task[] }>('GET', '/api/v1/tasks?limit=100')).items.filter(
    (t) => t.kind === 'backup.run',
  );
  assert.equal(runs.length, 1);
  const run = await api.waitTask(runs[0].id, ended, 60_000, 'ended');
  assert.equal(run.state, 'failed', 'the VM backup interrupted with it');
  assert.deepEqual([...(await backupsOf('k1')), ...(await backupsOf('k2'))], []);

  const again = await api.settle((await api.call(backupJobRoutes.run, { params: { job: 'kj' } })).task);
  assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
  assert.equal((await backupsOf('k1')).length, 1);
  assert.equal((await backupsOf('k2')).length, 1);
  assert.ok(!(await activeAlerts()).some((a) => a.id === `backup-job:${job.id}:failed`), 'cleared');
});

test('manager SIGKILLed during a restore test: the test fails, its throwaway VM is deleted, the backup stays unproven', async () => {
  const [b] = await backupsOf('k1');
  host.driver.faults.hangNext('run', 1);
  const { task } = await api.call(backupJobRoutes.prove, { params: { vm: 'k1', backup: b.id }, body: {} });
  await until('the throwaway VM starting', 20_000, async () =>
    host.driver.faults.hanging === 1 ? true : undefined,
  );
  const name = `prove-${task.id.slice(0, 8)}`;
  const throwaway = await api.request<Vm>('GET', `/api/v1/vms/${name}`);
  await c.manager.kill();
  // The host goes on and starts it: the manager finds it running when it is back.
  host.driver.faults.releaseHangs();
  await c.restartManager();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  assert.equal(done.state, 'failed');
  const vms = (await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?name=prove-')).items;
  assert.deepEqual(
    vms.map((v) => v.name),
    [],
  );
  assert.equal(
    host.driver.list().some((v) => v.id === throwaway.id),
    false,
    'gone from its host too',
  );
  assert.equal((await api.call(backupRoutes.show, { params: { vm: 'k1', backup: b.id } })).proven, null);
});
