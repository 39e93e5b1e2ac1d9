/**
 * Guest commands on a real guest: `vm exec` and `vm file get` through the tiny guest's qemu-ga,
 * and a disk grown with --grow-fs. One booted VM serves every case.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { GuestExecResult } from '../src/wire/guest-command.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, runTern, startCluster, tempDir } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('guest-commands');
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'g1', template: 'tiny', start: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('g1', (v) => v.state === 'running' && v.guest.agent === 'responding', 120_000, 'up');
});
after(async () => {
  await c?.stop();
});

const json = (body: unknown) => ({
  body: JSON.stringify(body),
  headers: { 'content-type': 'application/json' },
});
const exec = (body: unknown) => c.api.request<GuestExecResult>('POST', '/api/v1/vms/g1/exec', body);
const text = (b64: string) => Buffer.from(b64, 'base64').toString('utf8');

test('exec runs a command in the guest: its exit code, stdout and stderr', async () => {
  const ok = await exec({ command: ['cat', '/etc/hostname'] });
  assert.equal(ok.exitCode, 0);
  assert.equal(text(ok.stdout), 'g1\n');
  assert.equal(text(ok.stderr), '');

  const failing = await exec({ command: ['sh', '-c', 'echo to-out; echo oops >&2; exit 7'] });
  assert.equal(failing.exitCode, 7);
  assert.equal(text(failing.stdout), 'to-out\n');
  assert.equal(text(failing.stderr), 'oops\n');

  const fed = await exec({ command: ['cat'], input: Buffer.from('fed on stdin').toString('base64') });
  assert.equal(text(fed.stdout), 'fed on stdin');

  const cut = await exec({ command: ['sh', '-c', 'head -c 5000 /dev/zero'], maxOutputBytes: 1000 });
  assert.equal(Buffer.from(cut.stdout, 'base64').length, 1000);
  assert.equal(cut.stdoutTruncated, true);

  const missing = await c.api.raw('POST', '/api/v1/vms/g1/exec', json({ command: ['no-such-tool'] }));
  assert.equal(missing.status, 502);
  assert.match(missing.body.error?.message ?? '', /could not start no-such-tool.*No such file/);
});

test('a command that outlives its timeout is reported with its pid, and can be ended', async () => {
  const started = Date.now();
  const r = await c.api.raw(
    'POST',
    '/api/v1/vms/g1/exec',
    json({ command: ['sleep', '600'], timeoutSeconds: 1 }),
  );
  assert.equal(r.status, 504);
  assert.match(r.body.error?.message ?? '', /did not end within 1 s.*pid \d+/);
  assert.ok(Date.now() - started < 15_000);
  const pid = (r.body.error as { details?: { pid?: number } } | undefined)?.details?.pid;
  assert.ok(pid);
  const alive = await exec({ command: ['kill', '-0', String(pid)] });
  assert.equal(alive.exitCode, 0, 'it still runs in the guest');
  assert.equal((await exec({ command: ['kill', String(pid)] })).exitCode, 0);
});

test('file get reads a guest file byte-exact, in chunks; a missing file is not found', async () => {
  const content = randomBytes(700 * 1024);
  const wrote = await exec({
    command: ['sh', '-c', 'cat > /tmp/blob'],
    input: content.subarray(0, 512 * 1024).toString('base64'),
  });
  assert.equal(wrote.exitCode, 0);
  // stdin takes at most 1 MiB; the rest is appended by a second command.
  assert.equal(
    (
      await exec({
        command: ['sh', '-c', 'cat >> /tmp/blob'],
        input: content.subarray(512 * 1024).toString('base64'),
      })
    ).exitCode,
    0,
  );
  const res = await c.api.fetch(`${c.api.url}/api/v1/vms/g1/files/read`, {
    method: 'POST',
    body: JSON.stringify({ path: '/tmp/blob' }),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${c.api.token}` },
  });
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(content));

  const small = await c.api.raw(
    'POST',
    '/api/v1/vms/g1/files/read',
    json({ path: '/tmp/blob', maxBytes: 4096 }),
  );
  assert.equal(small.status, 413);
  const none = await c.api.raw('POST', '/api/v1/vms/g1/files/read', json({ path: '/no/such/file' }));
  assert.equal(none.status, 404);
  assert.match(none.body.error?.message ?? '', /cannot open \/no\/such\/file/);
});

test('the CLI passes the guest bytes through and exits with the command’s exit code', async () => {
  const env = c.api.cliEnv;
  const r = await runTern(
    ['vm', 'exec', 'g1', '--', 'sh', '-c', 'printf "a\\033[2Jb"; echo err >&2; exit 3'],
    {
      env,
      pipe: true,
    },
  );
  assert.equal(r.code, 3, r.stderr);
  assert.equal(r.stdout, 'a\u001b[2Jb', 'into a pipe the bytes go as they are');
  assert.equal(r.stderr, 'err\n');
  const fed = await runTern(['vm', 'exec', 'g1', '--input', '-', '--', 'tr', 'a-z', 'A-Z'], {
    env,
    input: 'shout',
  });
  assert.equal(fed.stdout, 'SHOUT');
  assert.equal(fed.code, 0);

  const got = await runTern(['vm', 'file', 'get', 'g1', '/etc/hostname'], { env });
  assert.equal(got.stdout, 'g1\n');
  const out = path.join(tempDir('guest-file'), 'hostname');
  const saved = await runTern(['vm', 'file', 'get', 'g1', '/etc/hostname', '--out', out], { env });
  assert.equal(saved.code, 0, saved.stderr);
  assert.equal(fs.readFileSync(out, 'utf8'), 'g1\n');
  const timedOut = await runTern(['vm', 'exec', 'g1', '--timeout', '1', '--', 'sleep', '5'], { env });
  assert.equal(timedOut.code, 124);
  assert.match(
    timedOut.stderr,
    /^tern: sleep did not end within 1 s in VM g1; it keeps running there as pid \d+/,
  );
});

test('--grow-fs finds the disk in the guest by its serial; without resize2fs it says the filesystem was not grown', async () => {
  const serial = await exec({ command: ['cat', '/sys/block/vda/serial'] });
  assert.equal(text(serial.stdout), 'tern-disk-0', 'the guest sees which disk is Tern’s disk 0');
  const df = async () =>
    Number(text((await exec({ command: ['sh', '-c', "df -k / | awk 'NR==2 {print $2}'"] })).stdout));
  const before = await df();
  const t = await c.api.task('POST', '/api/v1/vms/g1/disks/0/resize', { sizeGiB: 1, growFs: true });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const fsReport = (t.result as { filesystem: { grown: string[]; notGrown: string[]; message: string } })
    .filesystem;
  // The tiny guest's root is ext4 on the whole disk (no partition) and it has no e2fsprogs.
  assert.deepEqual(fsReport.grown, []);
  assert.deepEqual(fsReport.notGrown, [
    'ext4 on /dev/vda (/): e2fsprogs (resize2fs) is not installed in the guest',
  ]);
  assert.match(fsReport.message, /^the filesystem was not grown: /);
  const size = await exec({ command: ['cat', '/sys/block/vda/size'] });
  assert.equal(Number(text(size.stdout)) * 512, 1024 ** 3, 'the disk itself grew, as the guest sees it');
  assert.equal(await df(), before, 'its filesystem did not');

  const cli = await runTern(['vm', 'disk', 'resize', 'g1', '0', '1G', '--grow-fs'], { env: c.api.cliEnv });
  assert.equal(cli.code, 0, cli.stderr);
  assert.match(
    cli.stdout,
    /the filesystem was not grown: ext4 on \/dev\/vda \(\/\): e2fsprogs \(resize2fs\) is not installed/,
  );
});

test('a VM that is not running runs no commands', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'g2', template: 'tiny' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const r = await c.api.raw('POST', '/api/v1/vms/g2/exec', json({ command: ['true'] }));
  assert.equal(r.status, 409);
  assert.equal(r.body.error?.message, 'VM g2 is stopped: start it to run commands in its guest');
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/g2');
  assert.equal(vm.state, 'stopped');
});
