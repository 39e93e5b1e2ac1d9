/**
 * Failovers of replicated VMs through the manager between two simulated hosts: a test failover
 * runs a copy of a recovery point on an isolated network while a cycle still commits, and its
 * stop leaves the replica's points as they were; a planned failover ends with the replica
 * running, the primary stopped and kept from starting, the relationship failed-over; an
 * unplanned one is refused while the primary's host is merely unreachable and allowed once the
 * host is fenced. Throughout, each VM runs on exactly one host (the sim drivers' own lists).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TernError } from '../src/errors.ts';
import { pointVolume } from '../src/manager/replication/replica-spec.ts';
import { type Replication, replicationRoutes } from '../src/wire/api/replication.ts';
import type { HaHostStatus } from '../src/wire/ha.ts';
import type { Network } from '../src/wire/network.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern, type TestApi } from './harness.ts';
import { type SimCluster, startSimCluster, until } from './sim-harness.ts';

let cluster: SimCluster;
let api: TestApi;
let primaryHost: string;
let targetHost: string;

/** One cycle of `vm`'s relationship, run to its end: the point it committed. */
async function cycle(vm: string): Promise<string> {
  const { task } = await api.call(replicationRoutes.cycle, { params: { replication: vm } });
  const done = await api.settle(task);
  succeeded(done);
  return (done.result as { point: string }).point;
}

const points = async (vm: string) =>
  (await api.call(replicationRoutes.points, { params: { replication: vm } })).items.map((p) => p.id);

/** The file of a point on the replica's host, to compare before and after. */
function pointDigest(rel: Replication, point: string): string {
  const host = cluster.sim.host(targetHost);
  const file = path.join(host.pools.local!, pointVolume('local', rel.id, 'disk0', point).path);
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Every host a VM has a live process on: the ground truth. */
function runsOn(vmId: string): string[] {
  return cluster.sim.hosts
    .filter((h) =>
      h.driver.list().some((v) => v.id === vmId && (v.state === 'running' || v.state === 'paused')),
    )
    .map((h) => h.name);
}

const refused = async (p: Promise<unknown>, status: number, why: RegExp) => {
  const err = await p.then(
    () => null,
    (e: TernError & { status: number }) => e,
  );
  assert.ok(err, 'accepted');
  assert.equal(err.status, status, err.message);
  assert.match(err.message, why);
};

const succeeded = (t: Task) => assert.equal(t.state, 'succeeded', JSON.stringify(t.error));

before(async () => {
  cluster = await startSimCluster(2, { driver: { bootDelayMs: 20 } });
  api = cluster.api;
  for (const name of ['web-1', 'db-1', 'app-1', 'fx-1']) {
    // On the host's own pool: nothing but a failover can run them elsewhere.
    succeeded(
      await api.task('POST', '/api/v1/vms', {
        name,
        template: 'sim',
        pool: 'local',
        start: true,
        full: true,
      }),
    );
  }
  const placed = await Promise.all(
    ['web-1', 'db-1', 'app-1', 'fx-1'].map((n) => api.request<Vm>('GET', `/api/v1/vms/${n}`)),
  );
  primaryHost = placed[0]!.host!;
  targetHost = cluster.sim.hosts.map((h) => h.name).find((h) => h !== primaryHost)!;
  for (const vm of placed.slice(1))
    if (vm.host !== primaryHost) {
      // Moved with its disk: the replica then goes to the other host for every VM.
      succeeded(await api.task('POST', `/api/v1/vms/${vm.name}/migrate`, { to: primaryHost }));
    }
  for (const vm of ['web-1', 'db-1', 'app-1', 'fx-1']) {
    // No older point kept: only a pin keeps one.
    await api.request('POST', '/api/v1/replications', {
      vm,
      host: targetHost,
      pool: 'local',
      every: '24h',
      points: 0,
    });
    await cycle(vm);
  }
});

after(async () => {
  await cluster?.close();
});

test('a test failover runs a copy on an isolated network while cycles commit; its stop leaves the points as they were', async () => {
  const rel = await api.request<Replication>('GET', '/api/v1/replications/web-1');
  const first = rel.newestPoint!;
  const before = pointDigest(rel, first);
  const t = await api.task('POST', '/api/v1/replications/web-1/test-failover', {});
  succeeded(t);
  const copy = await api.request<Vm>('GET', '/api/v1/vms/web-1-test');
  assert.equal(copy.state, 'running');
  assert.equal(copy.host, targetHost);
  assert.equal(copy.ha.restart, 'none', 'not HA-protected');
  const net = await api.request<Network>('GET', '/api/v1/networks/web-1-test');
  assert.equal(net.type, 'isolated');
  assert.ok(
    copy.nics.length > 0 &&
      copy.nics.every((n) => n.network.mode === 'network' && n.network.network === net.id),
    'on the isolated network only',
  );
  assert.deepEqual(runsOn(copy.id), [targetHost]);
  assert.deepEqual(runsOn(rel.vmId), [primaryHost], 'the primary runs on');
  // Replication goes on; the lent point stays although no older point is kept.
  const second = await cycle('web-1');
  assert.deepEqual(await points('web-1'), [first, second]);
  await refused(
    api.request('POST', '/api/v1/replications/web-1/test-failover', {}),
    409,
    /runs already \(VM web-1-test\)/,
  );
  const stop = await api.task('POST', '/api/v1/replications/web-1/test-stop');
  succeeded(stop);
  await refused(api.request('GET', '/api/v1/vms/web-1-test'), 404, /does not exist/);
  await refused(api.request('GET', '/api/v1/networks/web-1-test'), 404, /does not exist/);
  assert.deepEqual(runsOn(copy.id), []);
  const lent = path.join(cluster.sim.host(targetHost).pools.local!, copy.disks[0]!.volume.path);
  assert.equal(fs.existsSync(lent), false, 'its overlay is gone');
  assert.equal(pointDigest(rel, first), before, "the point's file is as it was");
  await refused(api.request('POST', '/api/v1/replications/web-1/test-stop'), 404, /no test failover/);
  // Released, the point goes with the next prune.
  const third = await cycle('web-1');
  assert.deepEqual(await points('web-1'), [third]);
});

test('a test failover on a network that is not isolated is refused', async () => {
  await api.request('POST', '/api/v1/networks', { name: 'lan', type: 'nat', subnet: '10.77.0.0/24' });
  await refused(
    api.request('POST', '/api/v1/replications/web-1/test-failover', { network: 'lan' }),
    400,
    /isolated network only/,
  );
  await refused(
    api.request('POST', '/api/v1/replications/web-1/test-failover', { point: '2020-01-01T00-00-00Z' }),
    404,
    /no recovery point 2020-01-01T00-00-00Z/,
  );
});

test('tern replication test-failover and test-stop, and tern vm failover of a VM that is not replicated', async () => {
  const tern = (...args: string[]) => runTern(args, { env: api.cliEnv });
  const started = await tern('replication', 'test-failover', 'web-1', '-o', 'json');
  assert.equal(started.code, 0, started.stderr);
  assert.equal((JSON.parse(started.stdout) as Task).state, 'succeeded');
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/web-1-test')).state, 'running');
  const stopped = await tern('replication', 'test-stop', 'web-1', '-o', 'json');
  assert.equal(stopped.code, 0, stopped.stderr);
  await refused(api.request('GET', '/api/v1/vms/web-1-test'), 404, /does not exist/);
  const unknown = await tern('vm', 'failover', 'nope', '--planned');
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /nope is not replicated/);
});

test('a planned failover: the primary shut down, its last changes sent, the replica runs, the primary is kept from starting', async () => {
  const rel = await api.request<Replication>('GET', '/api/v1/replications/db-1');
  const t = await api.task('POST', '/api/v1/replications/db-1/failover', { planned: true });
  succeeded(t);
  const after = await api.request<Replication>('GET', '/api/v1/replications/db-1');
  assert.equal(after.state, 'failed-over');
  assert.notEqual(after.newestPoint, rel.newestPoint, 'one last point sent from the stopped primary');
  assert.ok(
    t.log?.some((l) => l.line.includes(`recovery point ${after.newestPoint} holds every write`)),
    'the replica runs on that last point',
  );
  const replica = await api.request<Vm>('GET', '/api/v1/vms/db-1-replica');
  assert.equal(replica.state, 'running');
  assert.equal(replica.host, targetHost);
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/db-1')).state, 'stopped');
  assert.deepEqual(runsOn(rel.vmId), []);
  assert.deepEqual(runsOn(rel.replicaVmId), [targetHost]);
  await refused(api.request('POST', '/api/v1/vms/db-1/start', {}), 409, /only a failover starts it/);
  await refused(
    api.request('POST', '/api/v1/replications/db-1/failover', { planned: true }),
    409,
    /failed over already/,
  );
});

test('reverse replication after a planned failover: the old disks are its first point, its first cycle sends only what changed since, and failing back runs the VM there again', async () => {
  const rel = await api.request<Replication>('GET', '/api/v1/replications/db-1');
  const all = (await api.call(replicationRoutes.list)).items;
  const reverse = all.find((r) => r.reverseOf === rel.id);
  assert.ok(reverse, 'a reverse relationship');
  assert.equal(reverse.vmId, rel.replicaVmId, 'from the new primary');
  assert.equal(reverse.replicaVmId, rel.vmId, "its replica is the old primary's VM");
  assert.equal(reverse.host, primaryHost);
  assert.equal(reverse.state, 'initial');
  assert.equal(reverse.resyncReason, null, 'nothing to send whole');
  const common = rel.newestPoint!;
  assert.deepEqual(await points(reverse.id), [common], 'the common point is its first point');
  // The new primary writes 128 KiB; its first reverse cycle sends that, not its disk.
  const replica = await api.request<Vm>('GET', '/api/v1/vms/db-1-replica');
  cluster.sim.host(targetHost).driver.writeDisk(replica.id, 0, 1 << 20, 128 * 1024);
  const { task } = await api.call(replicationRoutes.cycle, { params: { replication: reverse.id } });
  const first = await api.settle(task);
  succeeded(first);
  const result = first.result as { mode: string; sentBytes: number; dirtyBytes: number };
  assert.equal(result.mode, 'incremental');
  assert.equal(result.dirtyBytes, 128 * 1024);
  assert.ok(result.sentBytes <= 192 * 1024, `sent ${result.sentBytes} bytes`);
  const old = await api.request<Vm>('GET', '/api/v1/vms/db-1');
  assert.match(old.disks[0]!.volume.path, new RegExp(`^replicas/${reverse.id}/disk0/`));
  await refused(api.request('POST', '/api/v1/vms/db-1/start', {}), 409, /only a failover starts it/);
  // Failing back: a planned failover of the reverse runs db-1 on its first host again.
  const back = await api.task('POST', `/api/v1/replications/${reverse.id}/failover`, { planned: true });
  succeeded(back);
  assert.ok(back.log?.some((l) => l.line.includes('no reverse replication')));
  assert.deepEqual(runsOn(rel.vmId), [primaryHost]);
  assert.deepEqual(runsOn(rel.replicaVmId), []);
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/db-1')).state, 'running');
});

test('an unplanned failover is refused while the primary is merely unreachable, allowed once its host is fenced', async () => {
  const rel = await api.request<Replication>('GET', '/api/v1/replications/app-1');
  // Its host's fence kills it: it is HA-protected (best-effort: HA tries it elsewhere once).
  await api.request('PUT', '/api/v1/vms/app-1/ha', {
    restart: 'best-effort',
    priority: 'medium',
    order: 0,
    delayS: 0,
  });
  await api.request('PATCH', '/api/v1/ha/settings', { enabled: true, statefilePool: 'shared', timeoutS: 10 });
  const host = cluster.sim.host(primaryHost);
  const status = async () =>
    (await api.request<{ items: HaHostStatus[] }>('GET', '/api/v1/ha/status')).items.find(
      (s) => s.host === primaryHost,
    );
  await until('the primary host confirms it protects app-1', 30_000, async () => {
    const s = await status();
    return s?.leaseSeen && s.protecting > 0 && s.unconfirmed === 0 ? true : undefined;
  });
  try {
    host.driver.setReachable(false);
    await refused(api.request('POST', '/api/v1/replications/app-1/failover', {}), 409, /may still run there/);
    assert.deepEqual(runsOn(rel.vmId), [primaryHost]);
    host.driver.setStorageReachable(false);
    await until('the primary host fenced', 60_000, async () =>
      (await status())?.state === 'failed' ? true : undefined,
    );
    const t = await api.task('POST', '/api/v1/replications/app-1/failover', { point: 'latest' });
    succeeded(t);
    assert.equal((await api.request<Replication>('GET', '/api/v1/replications/app-1')).state, 'failed-over');
    assert.deepEqual(runsOn(rel.vmId), [], 'fenced on its host');
    assert.deepEqual(runsOn(rel.replicaVmId), [targetHost]);
    const replica = await api.request<Vm>('GET', '/api/v1/vms/app-1-replica');
    assert.equal(replica.ha?.restart, 'best-effort', 'its protection went with it');
  } finally {
    host.driver.setStorageReachable(true);
    host.driver.setReachable(true);
    await api.request('PATCH', '/api/v1/ha/settings', { enabled: false });
  }
});

test('a forced failover while the primary is cut off: the risk is logged, and the old primary is forced off once its host is back', async () => {
  await api.waitHost(primaryHost, (h) => h.state === 'online', 60_000, 'online again');
  const rel = await api.request<Replication>('GET', '/api/v1/replications/fx-1');
  const host = cluster.sim.host(primaryHost);
  host.driver.setReachable(false);
  try {
    const answer = await api.request<{ task: Task; warning?: string }>(
      'POST',
      '/api/v1/replications/fx-1/failover',
      { force: true },
    );
    assert.match(answer.warning ?? '', /two copies run/);
    const t = await api.settle(answer.task);
    succeeded(t);
    assert.ok(t.log?.some((l) => l.line.startsWith('warning: forced while')));
    const audit = await api.request<{ items: { action: string; detail: string | null }[] }>(
      'GET',
      '/api/v1/audit',
    );
    assert.ok(
      audit.items.some(
        (e) => e.action === 'POST /replications/:replication/failover' && /^forced: /.test(e.detail ?? ''),
      ),
      'the risk in the audit log',
    );
    assert.deepEqual(runsOn(rel.replicaVmId), [targetHost]);
    assert.deepEqual(runsOn(rel.vmId), [primaryHost], 'cut off, the old primary still runs there');
  } finally {
    host.driver.setReachable(true);
  }
  await until('the stale primary forced off', 60_000, async () =>
    runsOn(rel.vmId).length === 0 ? true : undefined,
  );
  assert.deepEqual(runsOn(rel.replicaVmId), [targetHost]);
  const alerts = await api.request<{ items: { id: string }[] }>('GET', '/api/v1/alerts');
  assert.ok(alerts.items.some((a) => a.id === `vm:${rel.vmId}:stale-copy`));
});
