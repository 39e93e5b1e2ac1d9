/** The tern CLI as people and scripts use it: tables, JSON, one-line errors and exit codes. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { type Cluster, repoRoot, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('cli');
});
after(async () => {
  await c?.stop();
});

function tern(...args: string[]) {
  const r = spawnSync(path.join(repoRoot, 'bin', 'tern'), args, {
    encoding: 'utf8',
    env: { ...process.env, ...c.api.cliEnv },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('create, list as a table and as JSON, show', () => {
  const made = tern('vm', 'create', 'cli-1', '--template', 'tiny', '--memory', '384M', '--vcpus', '2');
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stderr, /vm\.create: succeeded \(100%\)/, 'progress lines when not on a terminal');
  const table = tern('vm', 'list');
  assert.equal(table.code, 0);
  assert.match(table.stdout, /^NAME\s+STATE\s+HOST/m);
  assert.match(table.stdout, /^cli-1\s+stopped\s+local\s+2\s+384 MiB/m);
  const json = JSON.parse(tern('vm', 'list', '-o', 'json').stdout) as {
    items: { name: string; memoryMiB: number }[];
  };
  assert.deepEqual(
    json.items.map((v) => [v.name, v.memoryMiB]),
    [['cli-1', 384]],
  );
  const show = tern('vm', 'show', 'cli-1');
  assert.match(show.stdout, /^template:\s+tiny \(linked clone\)$/m);
});

test('--no-wait returns the task at once', () => {
  const r = tern('vm', 'delete', 'cli-1', '--no-wait', '-o', 'json');
  assert.equal(r.code, 0, r.stderr);
  const task = JSON.parse(r.stdout) as { id: string; kind: string };
  assert.equal(task.kind, 'vm.delete');
  const waited = tern('task', 'wait', task.id);
  assert.equal(waited.code, 0, waited.stderr);
});

test('failures are one clear line and a non-zero exit', () => {
  const missing = tern('vm', 'show', 'nosuch');
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'tern: VM nosuch does not exist\n');
  const badName = tern('vm', 'create', 'bad_name', '--template', 'tiny');
  assert.notEqual(badName.code, 0);
  assert.match(badName.stderr, /^tern: body\.name .+\n$/);
  const badSize = tern('vm', 'create', 'x', '--memory', 'lots');
  assert.equal(badSize.code, 2);
  assert.match(badSize.stderr, /--memory "lots" is not a size/);
  const badFlag = tern('vm', 'list', '--colour');
  assert.equal(badFlag.code, 2);
  assert.match(badFlag.stderr, /^tern: .*colour/);
  const down = spawnSync(path.join(repoRoot, 'bin', 'tern'), ['vm', 'list'], {
    encoding: 'utf8',
    env: { ...process.env, TERN_URL: 'https://127.0.0.1:1', TERN_TOKEN: 'x' },
  });
  assert.equal(down.status, 1);
  assert.match(down.stderr, /^tern: cannot reach the Tern manager at https:\/\/127\.0\.0\.1:1 .*\n$/);
});

test('hosts show their pools, each local or shared', () => {
  const r = tern('host', 'show', 'local');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^pools:\s+local \/\S+ \(local, [\d.]+ \w+ free\)$/m);
});

test('doctor lists prerequisites with fixes', () => {
  const r = tern('doctor', '-o', 'json');
  const checks = JSON.parse(r.stdout) as { check: string; ok: boolean; fix: string }[];
  for (const name of ['node', 'qemu', 'qemu-img', 'accelerator', 'disk space']) {
    assert.ok(
      checks.some((k) => k.check === name),
      name,
    );
  }
  assert.ok(checks.find((k) => k.check === 'qemu')?.ok);
  for (const k of checks.filter((x) => !x.ok)) assert.ok(k.fix.length > 0, `${k.check} has a fix`);
});
