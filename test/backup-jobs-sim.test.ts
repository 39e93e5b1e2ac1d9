/**
 * Backup jobs through the manager against a simulated host (whose backups are real chunk files
 * and manifests): a job over a named VM, a placement group and a project backs up each VM as a
 * task of its own, at most as many at once on a host as the job allows, and prunes by its
 * retention; a VM whose backup fails, or one deleted since, fails the whole run (never a
 * success) and raises an alert that the next clean run clears; the scheduler starts a job
 * when its next run has come, once, and plans the one after.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { SimHost } from '../src/agent/sim/cluster.ts';
import { TernError } from '../src/errors.ts';
import type { Alert } from '../src/wire/alert.ts';
import { type BackupJob, backupJobRoutes } from '../src/wire/api/backup-jobs.ts';
import { type Backup, backupRoutes } from '../src/wire/api/backups.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi } from './harness.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

let cluster: SimCluster;
let api: TestApi;
let host: SimHost;
const vms = new Map<string, Vm>();
const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });
// A schedule that does not come during the test: runs here are asked for, or ticked.
const never = '02-29 03:00';

before(async () => {
  cluster = await startSimCluster(1, { driver: { bootDelayMs: 20 } });
  api = cluster.api;
  host = cluster.sim.hosts[0];
  await api.call(backupRoutes.createDatastore, { body: { name: 'ds', path: path.join(cluster.dir, 'ds') } });
  await api.request('POST', '/api/v1/projects', { name: 'shop' });
  await api.request('POST', '/api/v1/placement-groups', { name: 'web', kind: 'anti-affinity' });
  const make = async (name: string, extra: Record<string, unknown>) => {
    const t = await api.task('POST', '/api/v1/vms', { name, template: 'sim', start: true, ...extra });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    vms.set(name, await api.request<Vm>('GET', `/api/v1/vms/${name}`));
  };
  await make('lone', {});
  await make('shop-1', { project: 'shop' });
  await make('shop-2', { project: 'shop' });
  await make('web-1', { groups: ['web'] });
  await make('other', {});
});

after(async () => {
  await cluster?.close();
});

const job = (name: string) => api.call(backupJobRoutes.show, { params: { job: name } });
const backupsOf = async (vm: string): Promise<Backup[]> =>
  (await api.call(backupRoutes.list, { query: { vm } })).items;
const activeAlerts = async () => (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items;

async function runJob(name: string): Promise<Task> {
  const { task } = await api.call(backupJobRoutes.run, { params: { job: name } });
  return api.settle(task);
}

/** The backup.run tasks a job's run started, oldest first. */
async function childrenOf(jobTask: Task): Promise<Task[]> {
  const all = await api.request<{ items: Task[] }>('GET', '/api/v1/tasks?limit=200');
  return all.items
    .filter((t) => t.kind === 'backup.run' && t.createdAt >= jobTask.createdAt)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

test('a job is refused when its schedule, selection or retention cannot be used, with a clear message', async () => {
  const refused = async (body: Record<string, unknown>, status: number, why: RegExp) => {
    const err = await api.request('POST', '/api/v1/backup/jobs', body).then(
      () => null,
      (e: TernError) => e,
    );
    assert.ok(err, `${JSON.stringify(body)} was accepted`);
    assert.equal(err.status, status, err.message);
    assert.match(err.message, why);
  };
  const base = { name: 'bad', datastore: 'ds', schedule: 'daily 02:00', vms: ['lone'] };
  await refused({ ...base, schedule: 'every 7m' }, 400, /every 7m does not divide an hour/);
  await refused({ ...base, schedule: '02-30' }, 400, /never happens/);
  await refused({ ...base, vms: [] }, 400, /name VMs, placement groups or projects/);
  await refused({ ...base, vms: ['nope'] }, 404, /VM nope does not exist/);
  await refused({ ...base, groups: ['nope'] }, 404, /placement group nope does not exist/);
  await refused({ ...base, projects: ['nope'] }, 404, /project nope does not exist/);
  await refused({ ...base, datastore: 'nope' }, 404, /datastore nope does not exist/);
  await refused({ ...base, retention: { 'keep-forever': 1 } }, 400, /keep-forever|additional/i);
  const list = await api.call(backupJobRoutes.list);
  assert.deepEqual(list.items, []);
});

test('a job over a VM, a placement group and a project backs each up as a task of its own, one at a time on the host', async () => {
  const r = await tern(
    'backup',
    'job',
    'create',
    'nightly',
    '--datastore',
    'ds',
    '--schedule',
    never,
    '--vm',
    'lone',
    '--group',
    'web',
    '--project',
    'shop',
    '--keep-last',
    '2',
    '--per-host',
    '1',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^selects: +vm lone, group web, project shop$/m);
  assert.match(r.stdout, /^retention: +last 2$/m);
  assert.match(r.stdout, /^at once: +1 per host, 4 on the datastore$/m);

  // Every backup hangs on the host until let go: while one hangs, no second may have started.
  const faults = host.driver.faults;
  faults.hangNext('backupVm', 4);
  const { task } = await api.call(backupJobRoutes.run, { params: { job: 'nightly' } });
  for (let i = 1; i <= 4; i++) {
    await until(`backup ${i} hanging on the host`, 10_000, async () =>
      faults.hanging === 1 ? true : undefined,
    );
    assert.equal((await childrenOf(task)).length, i, `backup ${i}: only one started at a time`);
    faults.releaseHangs('backupVm');
  }
  const done = await api.settle(task);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const children = await childrenOf(task);
  assert.deepEqual(
    children.map((t) => t.state),
    ['succeeded', 'succeeded', 'succeeded', 'succeeded'],
  );
  for (const name of ['lone', 'shop-1', 'shop-2', 'web-1'])
    assert.equal((await backupsOf(name)).length, 1, name);
  assert.equal((await backupsOf('other')).length, 0, 'a VM the job does not select');
  const shown = await job('nightly');
  assert.deepEqual(shown.lastResult, { state: 'succeeded', vms: 4, failed: 0, message: '4 VM(s) backed up' });
  assert.equal(shown.lastTask, task.id);
  assert.equal(shown.nextRunAt, shown.nextRuns?.[0]);
});

test('two jobs into one datastore together stay within its bound: one backup at a time with per-datastore 1', async () => {
  for (const [name, vm] of [
    ['ds-a', 'shop-1'],
    ['ds-b', 'shop-2'],
  ])
    await api.call(backupJobRoutes.create, {
      body: {
        name,
        datastore: 'ds',
        schedule: never,
        vms: [vm],
        concurrencyPerHost: 4,
        concurrencyPerDatastore: 1,
      },
    });
  const faults = host.driver.faults;
  faults.hangNext('backupVm', 2);
  try {
    const a = (await api.call(backupJobRoutes.run, { params: { job: 'ds-a' } })).task;
    await until('ds-a hanging on the host', 10_000, async () => (faults.hanging === 1 ? true : undefined));
    const b = (await api.call(backupJobRoutes.run, { params: { job: 'ds-b' } })).task;
    await api.waitTask(b.id, (t) => t.step.startsWith('backing up'), 10_000, 'waiting for a slot');
    assert.equal((await childrenOf(a)).length, 1, "only ds-a's backup started");
    faults.releaseHangs('backupVm');
    await until('ds-b hanging on the host', 10_000, async () => (faults.hanging === 1 ? true : undefined));
    assert.equal((await childrenOf(a)).length, 2, "ds-b's backup started once ds-a's ended");
    faults.releaseHangs('backupVm');
    for (const t of [a, b]) assert.equal((await api.settle(t)).state, 'succeeded');
  } finally {
    faults.hangNext('backupVm', 0);
    faults.releaseHangs();
  }
  for (const name of ['ds-a', 'ds-b']) await api.call(backupJobRoutes.remove, { params: { job: name } });
});

test('a job prunes each VM it backed up by its retention: keep-last 2 leaves the newest two', async () => {
  for (let i = 0; i < 2; i++) {
    const t = await runJob('nightly');
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  }
  const kept = await backupsOf('lone');
  assert.equal(kept.length, 2, JSON.stringify(kept.map((b) => b.id)));
  const t = await api.request<Task>('GET', `/api/v1/tasks/${(await job('nightly')).lastTask}?log=true`);
  const log = (t.log ?? []).map((l) => l.line).join('\n');
  assert.match(log, /lone: pruned 1 backup\(s\) by the retention/);
});

test('a VM whose backup fails fails the run, never a success, names it, and raises an alert the next clean run clears', async () => {
  const create = await api.call(backupJobRoutes.create, {
    body: { name: 'shop', datastore: 'ds', schedule: never, projects: ['shop'], concurrencyPerHost: 2 },
  });
  assert.equal(create.concurrencyPerHost, 2);
  host.driver.faults.failNext('backupVm', 1, new TernError('storage_error', 'disk1: read error at 4096'));
  const failed = await runJob('shop');
  assert.equal(failed.state, 'failed');
  assert.match(
    failed.error?.message ?? '',
    /backup job shop: 1 of 2 VM\(s\) not backed up: shop-\d \(.*disk1: read error at 4096\)/,
  );
  const shown = await job('shop');
  assert.equal(shown.lastResult?.state, 'failed');
  assert.equal(shown.lastResult?.failed, 1);
  const alert = (await activeAlerts()).find((a) => a.id === `backup-job:${create.id}:failed`);
  assert.ok(alert, 'an alert is raised');
  assert.equal(alert.severity, 'critical');
  assert.match(alert.message, /backup job shop failed: 1 of 2 VM\(s\) not backed up/);
  const list = await tern('backup', 'job', 'list');
  assert.match(list.stdout, /^shop +ds +02-29 03:00 +\S+ +failed /m);

  const ok = await runJob('shop');
  assert.equal(ok.state, 'succeeded', JSON.stringify(ok.error));
  assert.ok(!(await activeAlerts()).some((a) => a.id === `backup-job:${create.id}:failed`), 'cleared');
});

test('a VM a job names that was deleted since fails the run, the others still backed up, until the job is set without it', async () => {
  await api.call(backupJobRoutes.create, {
    body: { name: 'pair', datastore: 'ds', schedule: never, vms: ['other', 'lone'] },
  });
  const before = (await backupsOf('lone')).length;
  const other = vms.get('other')!;
  assert.equal((await api.task('POST', '/api/v1/vms/other/stop')).state, 'succeeded');
  assert.equal((await api.task('DELETE', '/api/v1/vms/other')).state, 'succeeded');
  const t = await runJob('pair');
  assert.equal(t.state, 'failed');
  assert.match(
    t.error?.message ?? '',
    new RegExp(`1 of 2 VM\\(s\\) not backed up: VM ${other.id} no longer exists`),
  );
  assert.equal((await backupsOf('lone')).length, before + 1);
  assert.deepEqual((await job('pair')).vms, [other.id, 'lone'], 'a deleted VM is shown by its id');
  // Until the job no longer names it: then its runs succeed again.
  const set = await tern('backup', 'job', 'set', 'pair', '--vm', 'lone', '--keep-last', '3');
  assert.equal(set.code, 0, set.stderr);
  assert.match(set.stdout, /^selects: +vm lone$/m);
  assert.match(set.stdout, /^retention: +last 3$/m);
  const again = await runJob('pair');
  assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
});

test('the scheduler starts a job once when its next run has come, and plans the one after', async () => {
  const made: BackupJob = await api.call(backupJobRoutes.create, {
    body: { name: 'hourly', datastore: 'ds', schedule: 'hourly', vms: ['shop-1'] },
  });
  assert.ok(made.nextRunAt, 'planned when made');
  const due = new Date(made.nextRunAt);
  const scheduler = cluster.manager.services.backupScheduler!;
  assert.deepEqual(await scheduler.tick(new Date(due.getTime() - 1000)), [], 'not due a second before');
  // Its backup hangs on the host, so the run is still going when it is due again.
  host.driver.faults.hangNext('backupVm', 1);
  const started = await scheduler.tick(due);
  assert.equal(started.length, 1);
  // A second manager's scheduler that read the same due run cannot take it as well.
  const jobs = cluster.manager.services.backupJobs;
  assert.equal(await jobs.setNextRun(made.id, new Date(due.getTime() + 3600_000), due), false);
  await until('the backup hanging', 10_000, async () =>
    host.driver.faults.hanging === 1 ? true : undefined,
  );
  // Due again while it runs: its lock makes the scheduler skip that run, not start it twice.
  assert.deepEqual(await scheduler.tick(new Date(due.getTime() + 3600_000)), []);
  host.driver.faults.releaseHangs('backupVm');
  const t = await api.settle(await api.request<Task>('GET', `/api/v1/tasks/${started[0]}`));
  assert.equal(t.kind, 'backup.job');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const after = await job('hourly');
  assert.equal(after.lastTask, started[0]);
  assert.equal(after.nextRunAt, new Date(due.getTime() + 2 * 3600_000).toISOString());
  assert.equal(after.nextRuns?.length, 5);

  const off = await tern('backup', 'job', 'disable', 'hourly');
  assert.equal(off.code, 0, off.stderr);
  assert.match(off.stdout, /^enabled: +no$/m);
  assert.equal((await job('hourly')).nextRunAt, null);
  assert.deepEqual(await scheduler.tick(new Date(due.getTime() + 10 * 3600_000)), []);
  const del = await tern('backup', 'job', 'delete', 'hourly');
  assert.equal(del.code, 0, del.stderr);
  assert.ok((await backupsOf('shop-1')).length > 0, 'its backups stay');
});

const throwaways = async () =>
  (await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?name=prove-')).items.map((v) => v.name);

test('backup prove restores a throwaway VM without a NIC, boots it, waits for its guest agent, deletes it and marks the backup proven', async () => {
  assert.ok(vms.get('lone')!.nics.length > 0, 'the backed-up VM has a NIC');
  const [b] = await backupsOf('lone');
  assert.equal(b.proven, null);
  // The throwaway VM's start waits on the host while we look at it.
  host.driver.faults.hangNext('run', 1);
  const { task } = await api.call(backupJobRoutes.prove, { params: { vm: 'lone', backup: b.id }, body: {} });
  await until('the throwaway VM starting', 20_000, async () =>
    host.driver.faults.hanging === 1 ? true : undefined,
  );
  const throwaway = await api.request<Vm>('GET', `/api/v1/vms/prove-${task.id.slice(0, 8)}`);
  assert.deepEqual(throwaway.nics, [], 'no NIC: it never meets the network as a second copy');
  assert.equal(throwaway.disks.length, vms.get('lone')!.disks.length);
  host.driver.faults.releaseHangs('run');
  const done = await api.settle(task);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  assert.deepEqual(await throwaways(), [], 'the throwaway VM is deleted');
  const proven = await api.call(backupRoutes.show, { params: { vm: 'lone', backup: b.id } });
  const proof = proven.proven?.detail as {
    secondsToGuest: number;
    secondsTotal: number;
    task: string;
    host: string;
  };
  assert.ok(proof, 'marked proven');
  assert.equal(proof.task, task.id);
  assert.equal(proof.host, host.name);
  assert.ok(proof.secondsToGuest > 0 && proof.secondsTotal >= proof.secondsToGuest, JSON.stringify(proof));

  const [, older] = await backupsOf('lone');
  const r = await tern('backup', 'prove', `lone/${older.id}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    new RegExp(`^lone/${older.id} proven: its guest agent answered [\\d.]+ s after the start`, 'm'),
  );
});

test('a backup whose throwaway VM does not start stays unproven, and the throwaway VM is deleted', async () => {
  const [b] = await backupsOf('shop-1');
  assert.equal(b.proven, null);
  host.driver.faults.failNext('run', 1, new TernError('hypervisor_error', 'no bootable device'));
  const { task } = await api.call(backupJobRoutes.prove, {
    params: { vm: 'shop-1', backup: b.id },
    body: {},
  });
  const done = await api.settle(task);
  assert.equal(done.state, 'failed');
  assert.match(done.error?.message ?? '', /no bootable device/);
  assert.deepEqual(await throwaways(), []);
  assert.equal((await api.call(backupRoutes.show, { params: { vm: 'shop-1', backup: b.id } })).proven, null);
});

test('a job that proves boots each backup it makes; one that does not boot fails the run; its bandwidth reaches each backup', async () => {
  const r = await tern(
    'backup',
    'job',
    'create',
    'proven',
    '--datastore',
    'ds',
    '--schedule',
    never,
    '--group',
    'web',
    '--vm',
    'lone',
    '--bandwidth',
    '50',
    '--prove',
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^proves backups: +yes/m);
  const ok = await runJob('proven');
  assert.equal(ok.state, 'succeeded', JSON.stringify(ok.error));
  for (const vm of ['lone', 'web-1']) {
    const [newest] = await backupsOf(vm);
    assert.ok(newest.proven, `${vm}'s new backup is proven`);
    assert.equal(newest.job, (await job('proven')).id);
  }
  assert.deepEqual(await throwaways(), []);
  const params = await cluster.manager.db
    .selectFrom('tasks')
    .select('params')
    .where('kind', '=', 'backup.run')
    .where('createdAt', '>=', ok.createdAt)
    .execute();
  assert.equal(params.length, 2);
  for (const p of params) assert.equal(JSON.parse(p.params).bandwidth, 50 * 2 ** 20);

  // The next run's first throwaway VM (lone's) does not start.
  host.driver.faults.failNext('run', 1, new TernError('hypervisor_error', 'no bootable device'));
  const failed = await runJob('proven');
  assert.equal(failed.state, 'failed');
  assert.match(
    failed.error?.message ?? '',
    /1 of 2 VM\(s\) not backed up: lone \(backup \S+ did not prove: .*no bootable device/,
  );
  const [unproven] = await backupsOf('lone');
  assert.equal(unproven.proven, null, 'kept, but unproven');
  assert.deepEqual(await throwaways(), []);
});
