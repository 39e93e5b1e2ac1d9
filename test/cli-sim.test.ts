/**
 * The CLI's commands for the cluster as a whole, against a manager driving simulated hosts:
 * each sends the typed values its route takes (a wrong word or number is refused before
 * anything is sent, naming the flag) and shows what the manager keeps.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { runTern, type TernRun } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let cluster: SimCluster;

before(async () => {
  cluster = await startSimCluster(2, { driver: { bootDelayMs: 50 } });
});
after(async () => {
  await cluster?.close();
});

const tern = (...args: string[]): Promise<TernRun> => runTern(args, { env: cluster.api.cliEnv });

async function json<T>(...args: string[]): Promise<T> {
  const r = await tern(...args, '-o', 'json');
  assert.equal(r.code, 0, `tern ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A command refused before anything is sent: one line naming the flag, exit non-zero. */
async function refused(message: RegExp, ...args: string[]): Promise<void> {
  const r = await tern(...args);
  assert.notEqual(r.code, 0, `tern ${args.join(' ')} should fail`);
  assert.match(r.stderr, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('cluster settings, groups, HA, tasks and the audit log: typed flags in, what the manager keeps out', async () => {
  await Promise.all([
    refused(/--strategy is spread or pack/, 'cluster', 'settings', '--strategy', 'tight'),
    refused(/--cpu-overcommit is a number/, 'cluster', 'settings', '--cpu-overcommit', 'lots'),
    refused(/--state is one of/, 'task', 'list', '--state', 'sleeping'),
    refused(/--result is ok, denied or failed/, 'audit', 'list', '--result', 'maybe'),
  ]);

  const changed = await json<{ strategy: string; cpuOvercommit: number }>(
    'cluster',
    'settings',
    '--strategy',
    'pack',
    '--cpu-overcommit',
    '2.5',
  );
  assert.equal(changed.strategy, 'pack');
  assert.equal(changed.cpuOvercommit, 2.5);
  assert.equal((await json<{ strategy: string }>('cluster', 'settings')).strategy, 'pack');
  const info = await json<{ hosts: { online: number } }>('cluster', 'show');
  assert.equal(info.hosts.online, 2);

  assert.equal((await tern('group', 'create', 'apart', '--anti-affinity')).code, 0);
  const groups = await json<{ name: string; kind: string }[]>('group', 'list');
  assert.deepEqual(
    groups.map((g) => [g.name, g.kind]),
    [['apart', 'anti-affinity']],
  );
  assert.equal((await tern('group', 'delete', 'apart')).code, 0);
  assert.deepEqual(await json('group', 'list'), []);

  const ha = await json<{ failuresToTolerate: number }>('ha', 'settings', '--tolerate', '1');
  assert.equal(ha.failuresToTolerate, 1);
  const [status, plan, check] = await Promise.all([
    json<unknown[]>('ha', 'status'),
    json<{ summary: string }>('ha', 'plan'),
    json<{ check: string }[]>('ha', 'check'),
  ]);
  // HA is off: no host is watched yet.
  assert.deepEqual(status, []);
  assert.ok(plan.summary.length > 0);
  assert.ok(check.length > 0);

  const audit = await json<{ items: { result: string; action: string }[] }>(
    'audit',
    'list',
    '--result',
    'ok',
    '--limit',
    '3',
  );
  assert.ok(audit.items.length > 0 && audit.items.length <= 3);
  assert.ok(audit.items.every((r) => r.result === 'ok'));
});

test('a VM: its HA policy, where it would migrate, its migration, and a host maintenance that moves it', async () => {
  const made = await tern('vm', 'create', 'mover', '--template', 'sim', '--start');
  assert.equal(made.code, 0, made.stderr);

  await refused(/--restart is restart, best-effort or none/, 'vm', 'ha', 'mover', '--restart', 'sometimes');
  const policy = await json<{ restart: string; priority: string }>(
    'vm',
    'ha',
    'mover',
    '--restart',
    'best-effort',
    '--priority',
    'high',
  );
  assert.deepEqual([policy.restart, policy.priority], ['best-effort', 'high']);

  const preview = await json<{ placement: { verdicts: { host: string }[] } }>(
    'vm',
    'migrate',
    'mover',
    '--explain',
  );
  assert.equal(preview.placement.verdicts.length, 2);
  const from = (await json<{ host: string }>('vm', 'show', 'mover')).host;
  const moved = await json<{ state: string; result: { from: string; to: string } }>('vm', 'migrate', 'mover');
  assert.equal(moved.state, 'succeeded');
  assert.deepEqual([moved.result.from, moved.result.to === from], [from, false]);

  const host = moved.result.to;
  const maintenance = await json<{ result: { moved: string[] } }>('host', 'maintenance', 'on', host);
  assert.deepEqual(maintenance.result.moved, ['mover']);
  assert.equal((await json<{ host: string }>('vm', 'show', 'mover')).host, from);
  assert.equal((await json<{ state: string }>('host', 'maintenance', 'off', host)).state, 'online');

  const [templates, pools, orphans] = await Promise.all([
    json<{ name: string }[]>('template', 'list'),
    json<unknown[]>('pool', 'list'),
    json<unknown[]>('host', 'orphans'),
  ]);
  assert.deepEqual(
    templates.map((t) => t.name),
    ['sim'],
  );
  assert.deepEqual(pools, []);
  assert.deepEqual(orphans, []);
});
