/**
 * The CLI on a hundred VMs, against simulated hosts: a range of names for every verb, lists
 * in the order people count, and JSON that reaches a pipe whole.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Vm } from '../src/wire/vm.ts';
import { repoRoot, runTern } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
before(async () => {
  c = await startSimCluster(1);
});
after(async () => {
  await c?.close();
});

/** bin/tern as a script runs it, its stdout into a real pipe. */
const tern = (...args: string[]) => runTern(args, { env: c.api.cliEnv, pipe: true });

const count = 105;
const expected = Array.from({ length: count }, (_, i) => `t-${i + 1}`);

test('a range the shell left alone creates every VM; lists come in natural order, whole through a pipe', async () => {
  const made = await tern('vm', 'create', `t-{1..${count}}`, '--template', 'sim');
  assert.equal(made.code, 0, made.stderr);
  assert.equal(made.stdout, `${count} of ${count} VMs created\n`);

  const json = await tern('vm', 'list', '-o', 'json');
  assert.equal(json.code, 0, json.stderr);
  assert.ok(json.stdout.length > 64 * 1024, `more than a pipe holds: ${json.stdout.length} bytes`);
  const page = JSON.parse(json.stdout) as { items: Vm[]; nextCursor: string | null; total: number };
  assert.deepEqual(
    page.items.map((v) => v.name),
    expected,
  );
  assert.equal(page.total, count);
  assert.equal(page.nextCursor, null);

  const table = await tern('vm', 'list');
  assert.equal(table.code, 0, table.stderr);
  const names = table.stdout
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(/\s+/)[0]);
  assert.deepEqual(names, expected);
});

test('every verb takes several names and ranges, and names each failure', async () => {
  const missing = await tern('vm', 'start', 'nosuch-{1..2}');
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /^tern: 2 failed: nosuch-1 \(VM nosuch-1 does not exist\); nosuch-2 \(.*\)\n$/,
  );

  // Some names as the shell expands them, the rest as a range it did not.
  const gone = await tern('vm', 'delete', 't-1', 't-2', `t-{3..${count}}`);
  assert.equal(gone.code, 0, gone.stderr);
  assert.equal(gone.stdout, `${count} of ${count} VMs deleted\n`);
  const left = await tern('vm', 'list', '-o', 'json');
  assert.deepEqual((JSON.parse(left.stdout) as { items: Vm[] }).items, []);
});

test('immediate deletes take ranges too, and go on past a failure', async () => {
  for (const name of ['p-1', 'p-2', 'p-10']) await c.api.request('POST', '/api/v1/projects', { name });
  const r = await tern('project', 'delete', 'p-{1..2}', 'p-nosuch', 'p-10');
  assert.equal(r.code, 1);
  assert.equal(r.stdout, 'project p-1 deleted\nproject p-2 deleted\nproject p-10 deleted\n');
  assert.match(r.stderr, /^tern: 1 failed: p-nosuch \(.*\)\n$/);
  const { items } = await c.api.request<{ items: { name: string }[] }>('GET', '/api/v1/projects');
  assert.deepEqual(
    items.filter((p) => p.name.startsWith('p-')),
    [],
  );
});

test('tern --version prints the version of package.json', async () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
  const r = await tern('--version');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `tern ${pkg.version}\n`);
});
