/**
 * Replication through the manager between two simulated hosts: a relationship makes a stopped
 * replica VM on the target host that nothing but a failover starts; bad input is refused with
 * a clear message; pause, resume and remove (which takes the replica VM with it).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import type { TernError } from '../src/errors.ts';
import { ReplicationScheduler } from '../src/manager/replication/scheduler.ts';
import type { Alert } from '../src/wire/alert.ts';
import { type Replication, replicationRoutes } from '../src/wire/api/replication.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

const silentLog = pino({ level: 'silent' });
let cluster: SimCluster;
let api: TestApi;
let primaryHost: string;
let targetHost: string;

before(async () => {
  cluster = await startSimCluster(2, { driver: { bootDelayMs: 20 } });
  api = cluster.api;
  for (const name of ['web-1', 'db-1']) {
    const t = await api.task('POST', '/api/v1/vms', { name, template: 'sim', start: true });
    assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  }
  // Cycles here are asked for, or ticked at chosen instants: the scheduler's own clock is stopped.
  scheduler().stop();
  primaryHost = (await api.request<Vm>('GET', '/api/v1/vms/web-1')).host ?? '';
  targetHost = cluster.sim.hosts.map((h) => h.name).find((h) => h !== primaryHost) ?? '';
  const db1 = await api.request<Vm>('GET', '/api/v1/vms/db-1');
  // Both on one host, so the other is the target of both.
  if (db1.host !== primaryHost) await api.task('POST', '/api/v1/vms/db-1/migrate', { to: primaryHost });
});

after(async () => {
  await cluster?.close();
});

const refused = async (p: Promise<unknown>, status: number, why: RegExp) => {
  const err = await p.then(
    () => null,
    (e: TernError & { status: number }) => e,
  );
  assert.ok(err, 'accepted');
  assert.equal(err.status, status, err.message);
  assert.match(err.message, why);
};

test('a replication is refused for a bad interval, the same host, an unknown pool, a second one per VM', async () => {
  const create = (body: Record<string, unknown>) => api.request('POST', '/api/v1/replications', body);
  const base = { vm: 'web-1', host: targetHost, pool: 'local', every: '30s' };
  await refused(create({ ...base, every: '10s' }), 400, /from 30s to 24h/);
  await refused(create({ ...base, host: primaryHost }), 400, /replicate it to another host/);
  await refused(create({ ...base, pool: 'nope' }), 400, /has no pool nope: name one of/);
  await refused(create({ ...base, points: 25 }), 400, /points/);
  await refused(create({ ...base, appConsistentEvery: '10s' }), 400, /more often than the cycles/);
  await api.call(replicationRoutes.create, { body: { ...base, vm: 'db-1' } });
  await refused(create({ ...base, vm: 'db-1' }), 409, /replicated already/);
  await api.call(replicationRoutes.remove, { params: { replication: 'db-1' } });
});

test('a replica is a stopped VM on the target host, its disks in the replica pool, and it cannot be started', async () => {
  const r: Replication = await api.call(replicationRoutes.create, {
    body: { vm: 'web-1', host: targetHost, pool: 'local', every: '5m', points: 4, appConsistentEvery: '1h' },
  });
  assert.equal(r.vm, 'web-1');
  assert.equal(r.replica, 'web-1-replica');
  assert.equal(r.host, targetHost);
  assert.equal(r.intervalSeconds, 300);
  assert.equal(r.appConsistentEverySeconds, 3600);
  assert.equal(r.state, 'initial');
  assert.equal(r.rpo.state, 'initial');
  const replica = await api.request<Vm>('GET', '/api/v1/vms/web-1-replica');
  assert.equal(replica.state, 'stopped');
  assert.equal(replica.host, targetHost);
  assert.match(replica.disks[0].volume.path, new RegExp(`^replicas/${r.id}/disk0/`));
  assert.equal(replica.disks[0].volume.pool, 'local');
  await refused(
    api.request('POST', '/api/v1/vms/web-1-replica/start', {}),
    409,
    /only a failover starts it; see tern vm failover/,
  );
  await refused(
    api.request('DELETE', '/api/v1/vms/web-1-replica'),
    409,
    /VM web-1-replica is a replica: remove its replication instead \(tern replication remove web-1\)/,
  );
  await refused(
    api.request('DELETE', '/api/v1/vms/web-1?force=true'),
    409,
    /VM web-1 is replicated: remove its replication first/,
  );
  // By its id too, and listed.
  assert.equal((await api.call(replicationRoutes.show, { params: { replication: r.id } })).vm, 'web-1');
  assert.deepEqual(
    (await api.call(replicationRoutes.list)).items.map((x) => x.vm),
    ['web-1'],
  );
});

function scheduler(): ReplicationScheduler {
  const s = cluster.manager.services.replicationScheduler;
  assert.ok(s, 'the manager runs a replication scheduler');
  return s;
}

const rpoAlerts = async () =>
  (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items.filter((a) => a.id.endsWith(':rpo'));

async function cycle(vm: string) {
  const { task } = await api.call(replicationRoutes.cycle, { params: { replication: vm } });
  return api.settle(task);
}

test('a cycle makes a recovery point the replica stands on; later ones prune to the points kept', async () => {
  const first = await cycle('web-1');
  assert.equal(first.state, 'succeeded', JSON.stringify(first.error));
  const r = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  assert.equal(r.state, 'replicating');
  assert.equal(r.rpo.state, 'ok');
  assert.equal(r.pointCount, 1);
  assert.ok(r.newestPoint);
  const replica = await api.request<Vm>('GET', '/api/v1/vms/web-1-replica');
  assert.equal(replica.disks[0].volume.path, `replicas/${r.id}/disk0/${r.newestPoint}.qcow2`);
  const second = await cycle('web-1');
  assert.equal(second.state, 'succeeded', JSON.stringify(second.error));
  assert.equal((second.result as { mode: string }).mode, 'incremental');
  // The first point was frozen (an application-consistent one is due every hour), the second
  // not; both kept (4 older points, hourly).
  const points = (await api.call(replicationRoutes.points, { params: { replication: 'web-1' } })).items;
  assert.deepEqual(
    points.map((p) => [p.consistency, p.kept]),
    [
      ['application', 'period, application-consistent'],
      ['crash', 'latest'],
    ],
  );
});

test('with no older points kept, each cycle leaves only the newest, on the host too', async () => {
  const r = await api.call(replicationRoutes.create, {
    body: { vm: 'db-1', host: targetHost, pool: 'local', every: '30s', points: 0 },
  });
  for (let i = 0; i < 3; i++) assert.equal((await cycle('db-1')).state, 'succeeded');
  const points = (await api.call(replicationRoutes.points, { params: { replication: 'db-1' } })).items;
  assert.deepEqual(
    points.map((p) => p.kept),
    ['latest'],
  );
  const onHost = fs.readdirSync(
    path.join(cluster.sim.host(targetHost).pools.local, 'replicas', r.id, 'disk0'),
  );
  assert.deepEqual(
    onHost.filter((f) => f.endsWith('.qcow2')),
    [`${points[0].id}.qcow2`],
  );
  await api.call(replicationRoutes.remove, { params: { replication: 'db-1' } });
  assert.equal(fs.existsSync(path.join(cluster.sim.host(targetHost).pools.local, 'replicas', r.id)), false);
});

test('the scheduler starts a cycle when one is due, none while the replica is within its interval', async () => {
  const r = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  const soon = await scheduler().tick(new Date());
  assert.deepEqual(soon.started, [], 'nothing due right after a cycle');
  assert.ok(soon.nextAt && soon.nextAt > Date.now());
  const later = await scheduler().tick(new Date(Date.now() + r.intervalSeconds * 1000 + 1000));
  assert.equal(later.started.length, 1);
  const t = await api.settle(await api.request<Task>('GET', `/api/v1/tasks/${later.started[0]}`));
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal(t.kind, 'replication.cycle');
});

test('two schedulers on one database (two managers) start a due cycle once', async () => {
  const services = cluster.manager.services;
  const make = () =>
    new ReplicationScheduler({ ...services, log: silentLog }, services.kinds.replicationCycle);
  const r = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  const due = new Date(Date.now() + r.intervalSeconds * 1000 + 1000);
  const [a, b] = await Promise.all([make().tick(due), make().tick(due)]);
  const started = [...a.started, ...b.started];
  assert.equal(started.length, 1, `${started.length} cycles started`);
  const t = await api.settle(await api.request<Task>('GET', `/api/v1/tasks/${started[0]}`));
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
});

test('a target host down: the RPO goes to alert and raises an alert, cleared by the next cycle once it is back; paused, none', async () => {
  const target = cluster.sim.host(targetHost);
  const r = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  const past = (k: number) => new Date(Date.now() + k * r.intervalSeconds * 1000);
  await api.call(replicationRoutes.pause, { params: { replication: 'web-1' } });
  assert.deepEqual((await scheduler().tick(past(3))).started, []);
  assert.deepEqual(await rpoAlerts(), [], 'a paused replication raises no RPO alert');
  await api.call(replicationRoutes.resume, { params: { replication: 'web-1' } });

  target.driver.powerOff();
  try {
    await api.waitHost(targetHost, (h) => h.state === 'offline', 60_000, 'offline');
    const tick = await scheduler().tick(past(3));
    assert.equal(tick.started.length, 1, 'a cycle is due');
    const failed = await api.settle(await api.request<Task>('GET', `/api/v1/tasks/${tick.started[0]}`));
    assert.equal(failed.state, 'failed');
    assert.match(failed.error?.message ?? '', new RegExp(`host ${targetHost} is offline`));
    await scheduler().tick(past(3));
    const [alert] = await rpoAlerts();
    assert.ok(alert, 'an RPO alert is raised');
    assert.match(
      alert.message,
      /the replica of VM web-1 breaks its RPO: the replica trails by .*more than twice the 5 min promised/,
    );
    const shown = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
    assert.match(shown.lastError ?? '', /offline/);
  } finally {
    target.driver.powerOn();
  }
  await api.waitHost(targetHost, (h) => h.state === 'online', 60_000, 'online again');
  assert.equal((await cycle('web-1')).state, 'succeeded');
  await scheduler().tick(new Date());
  assert.deepEqual(await rpoAlerts(), [], 'the RPO alert is cleared');
  const back = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  assert.equal(back.rpo.state, 'ok');
  assert.equal(back.lastError, null);
});

test('a replica that lost its points resyncs on its own: the cycle sends whole, says why, and the alert clears', async () => {
  const r = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  assert.ok(r.newestPoint);
  // The replica's files gone behind Tern's back (a pool restored, a directory removed).
  fs.rmSync(path.join(cluster.sim.host(targetHost).pools.local, 'replicas', r.id), { recursive: true });
  const t = await cycle('web-1');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal((t.result as { mode: string }).mode, 'full');
  const log = (await api.request<Task>('GET', `/api/v1/tasks/${t.id}`)).log?.map((l) => l.line) ?? [];
  assert.ok(
    log.includes(
      `resync: the replica's host holds none of its recovery points (the newest was ${r.newestPoint}); this cycle sends the disks whole`,
    ),
    log.join('\n'),
  );
  assert.ok(
    log.some((l) => l.startsWith('forgot recovery point(s)')),
    'the lost points are forgotten',
  );
  const all = (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts?all=true')).items;
  const resync = all.find((a) => a.id === `replication:${r.id}:resync`);
  assert.ok(resync, 'the resync was alerted');
  assert.match(resync.message, /replication of VM web-1 resyncs: the replica's host holds none/);
  assert.notEqual(resync.clearedAt, null, 'and cleared once the cycle completed');
  const after = await api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  assert.equal(after.resyncReason, null);
  assert.equal(after.pointCount, 1);
});

test('pause and resume: a paused relationship promises nothing', async () => {
  const paused = await api.call(replicationRoutes.pause, { params: { replication: 'web-1' } });
  assert.equal(paused.state, 'paused');
  assert.equal(paused.rpo.state, 'paused');
  assert.equal(paused.rpo.nextCycleAt, null);
  const resumed = await api.call(replicationRoutes.resume, { params: { replication: 'web-1' } });
  assert.equal(resumed.state, 'replicating');
  await refused(api.request('POST', '/api/v1/replications/web-1/resume', {}), 409, /not paused/);
});

test('removing a relationship removes its replica VM; an unknown one is a 404', async () => {
  await api.call(replicationRoutes.remove, { params: { replication: 'web-1' } });
  await refused(api.request('GET', '/api/v1/vms/web-1-replica'), 404, /does not exist/);
  await refused(api.request('GET', '/api/v1/replications/web-1'), 404, /not replicated/);
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/web-1')).state, 'running');
});

test('the CLI replicates a VM, runs a cycle, lists points, and removes the replication', async () => {
  const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });
  const made = await tern(
    'vm',
    'replicate',
    'db-1',
    '--to',
    targetHost,
    '--pool',
    'local',
    '--every',
    '30s',
    '--points',
    '2',
    '--app-consistent-every',
    '4h',
    '--bandwidth',
    '50M',
  );
  assert.equal(made.code, 0, made.stderr);
  assert.match(
    made.stdout,
    new RegExp(`VM db-1 replicates to ${targetHost} every 30s; its replica is db-1-replica`),
  );
  const bad = await tern('vm', 'replicate', 'web-1', '--to', targetHost, '--every', '10s');
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /from 30s to 24h/);
  const cycled = await tern('replication', 'cycle', 'db-1');
  assert.equal(cycled.code, 0, cycled.stderr);
  const shown = JSON.parse((await tern('replication', 'show', 'db-1', '-o', 'json')).stdout) as Replication;
  assert.equal(shown.bandwidth, 50 * 2 ** 20);
  assert.equal(shown.pointCount, 1);
  const points = await tern('replication', 'points', 'db-1');
  assert.match(points.stdout, new RegExp(`${shown.newestPoint}.*application.*latest`));
  const list = await tern('replication', 'list');
  assert.match(list.stdout, /db-1\s+db-1-replica\s+\S+\s+30s\s+replicating\s+ok/);
  const removed = await tern('replication', 'remove', 'db-1');
  assert.equal(removed.code, 0, removed.stderr);
  assert.deepEqual((await api.call(replicationRoutes.list)).items, []);
});
