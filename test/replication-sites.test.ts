/**
 * Replication to another site: two clusters (each a manager with its own CA and a simulated
 * host) trust each other by fingerprint; a VM of the first replicates to the second, whose
 * manager chooses the host and pool, relays the stream to that host (its agents trust only their
 * own CA) and records the points it holds. The second site shows the relationship as driven
 * from the first and refuses to drive it; removing it at the first removes the replica there.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TernError } from '../src/errors.ts';
import { replicationRoutes } from '../src/wire/api/replication.ts';
import { siteRoutes } from '../src/wire/api/sites.ts';
import type { Vm } from '../src/wire/vm.ts';
import { runTern } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let alpha: SimCluster;
let beta: SimCluster;

before(async () => {
  [alpha, beta] = await Promise.all([
    startSimCluster(1, { driver: { bootDelayMs: 20 } }),
    startSimCluster(1, { driver: { bootDelayMs: 20 } }),
  ]);
  const [selfA, selfB] = await Promise.all([alpha.api.call(siteRoutes.self), beta.api.call(siteRoutes.self)]);
  await alpha.api.call(siteRoutes.add, {
    body: { name: 'beta', url: selfB.url, fingerprint: selfB.fingerprint },
  });
  const back = await beta.api.call(siteRoutes.add, {
    body: { name: 'alpha', url: selfA.url, fingerprint: selfA.fingerprint },
  });
  assert.equal(back.link?.state, 'trusted', back.link?.message);
  const t = await alpha.api.task('POST', '/api/v1/vms', { name: 'web-1', template: 'sim', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
});

after(async () => {
  await alpha?.close();
  await beta?.close();
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

async function cycle() {
  const { task } = await alpha.api.call(replicationRoutes.cycle, { params: { replication: 'web-1' } });
  return alpha.api.settle(task);
}

test('a VM replicates to a trusted site, which keeps its points on a host of its own', async () => {
  // `--to` names a trusted site as it names a host.
  const made = await runTern(
    ['vm', 'replicate', 'web-1', '--to', 'beta', '--every', '30s', '--points', '2'],
    {
      env: alpha.api.cliEnv,
    },
  );
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /replicates to site beta/);
  const r = await alpha.api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  const betaHost = beta.sim.hosts[0]!.name;
  assert.deepEqual(r.site, { name: 'beta', direction: 'to' });
  assert.equal(r.host, betaHost);
  assert.equal(r.replica, 'web-1-replica');

  const first = await cycle();
  assert.equal(first.state, 'succeeded', JSON.stringify(first.error));
  const second = await cycle();
  assert.equal(second.state, 'succeeded', JSON.stringify(second.error));
  assert.equal((second.result as { mode: string }).mode, 'incremental');
  const shown = await alpha.api.call(replicationRoutes.show, { params: { replication: 'web-1' } });
  assert.equal(shown.pointCount, 2);
  assert.equal(shown.rpo.state, 'ok');

  // At the replica's site: the relationship, driven from alpha, its points, its replica VM.
  const [inbound] = (await beta.api.call(replicationRoutes.list)).items;
  assert.ok(inbound);
  assert.equal(inbound.id, r.id);
  assert.deepEqual(inbound.site, { name: 'alpha', direction: 'from' });
  // Beta's scheduler watches its RPO but never starts its cycles: alpha does.
  await beta.manager.services.replicationScheduler?.tick(new Date(Date.now() + 3600_000));
  assert.equal(
    (await beta.api.call(replicationRoutes.show, { params: { replication: r.id } })).lastTask,
    null,
  );
  assert.equal(inbound.vm, 'web-1');
  assert.equal(inbound.newestPoint, shown.newestPoint);
  assert.equal(inbound.pointCount, 2);
  const replica = await beta.api.request<Vm>('GET', '/api/v1/vms/web-1-replica');
  assert.equal(replica.state, 'stopped');
  assert.equal(replica.host, betaHost);
  assert.equal(replica.disks[0]!.volume.path, `replicas/${r.id}/disk0/${shown.newestPoint}.qcow2`);
  assert.equal(replica.nics.length, 0);
  const files = fs.readdirSync(path.join(beta.sim.host(betaHost).pools.local, 'replicas', r.id, 'disk0'));
  assert.equal(files.filter((f) => f.endsWith('.qcow2')).length, 2);
  await refused(beta.api.request('POST', '/api/v1/vms/web-1-replica/start', {}), 409, /failover/);
  await refused(
    beta.api.call(replicationRoutes.pause, { params: { replication: r.id } }),
    409,
    /another site: that site drives it/,
  );
  await refused(
    beta.api.call(siteRoutes.remove, { params: { site: 'alpha' } }),
    409,
    /used by 1 replication/,
  );

  // Removed where it is driven: gone at both sites, files too.
  await alpha.api.call(replicationRoutes.remove, { params: { replication: 'web-1' } });
  assert.deepEqual((await beta.api.call(replicationRoutes.list)).items, []);
  await refused(beta.api.request('GET', '/api/v1/vms/web-1-replica'), 404, /web-1-replica/);
  assert.equal(fs.existsSync(path.join(beta.sim.host(betaHost).pools.local, 'replicas', r.id)), false);
});

test('a site that does not trust this cluster keeps no replica for it', async () => {
  await beta.api.call(siteRoutes.remove, { params: { site: 'alpha' } });
  await refused(
    alpha.api.call(replicationRoutes.create, { body: { vm: 'web-1', site: 'beta', every: '30s' } }),
    503,
    /site beta/,
  );
  assert.deepEqual((await alpha.api.call(replicationRoutes.list)).items, []);
});

test('the replica fails over at its site: refused while the primary runs at its own, allowed once it is stopped there', async () => {
  const selfA = await alpha.api.call(siteRoutes.self);
  await beta.api.call(siteRoutes.add, {
    body: { name: 'alpha', url: selfA.url, fingerprint: selfA.fingerprint },
  });
  const t = await alpha.api.task('POST', '/api/v1/vms', { name: 'db-1', template: 'sim', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const r = await alpha.api.call(replicationRoutes.create, {
    body: { vm: 'db-1', site: 'beta', every: '30s' },
  });
  const { task } = await alpha.api.call(replicationRoutes.cycle, { params: { replication: 'db-1' } });
  assert.equal((await alpha.api.settle(task)).state, 'succeeded');

  // At beta: alpha says db-1 runs, so not even a forced failover starts the replica.
  const failover = (body: Record<string, unknown>) =>
    beta.api.request('POST', `/api/v1/replications/${r.id}/failover`, body);
  await refused(failover({}), 409, /db-1 is running/);
  await refused(failover({ force: true }), 409, /db-1 is running/);
  await refused(failover({ planned: true }), 409, /stop it there/);

  // Stopped at alpha (a last cycle sends its final writes), beta fails over without force.
  const stop = await alpha.api.task('POST', '/api/v1/vms/db-1/stop', { force: true });
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
  const last = await alpha.api.call(replicationRoutes.cycle, { params: { replication: 'db-1' } });
  assert.equal((await alpha.api.settle(last.task)).state, 'succeeded');
  const done = await beta.api.task('POST', `/api/v1/replications/${r.id}/failover`, {});
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const replica = await beta.api.waitVm('db-1-replica', (v) => v.state === 'running', 30_000, 'running');
  assert.equal(replica.host, beta.sim.hosts[0]!.name);
  // Alpha's next cycle is refused by beta, saying why: its RPO watch shows the replication late.
  const after = await alpha.api.call(replicationRoutes.cycle, { params: { replication: 'db-1' } });
  const failed = await alpha.api.settle(after.task);
  assert.equal(failed.state, 'failed');
  assert.match(failed.error?.message ?? '', /failed over at this site/);
});
