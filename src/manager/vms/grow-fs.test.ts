import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GuestExecRequest, GuestExecResult } from '../../wire/guest-command.ts';
import { growInGuest, planGrowth, probeScript } from './grow-fs.ts';

const mounts = `mount /dev/vda1 / ext4 rw,relatime 0 0
mount proc /proc proc rw 0 0
mount /dev/vdb1 /data xfs rw 0 0
mount /dev/vdb1 /srv/bind xfs rw 0 0
mount /dev/vdc /scratch ext4 rw 0 0
mount /dev/vdd2 /var btrfs rw 0 0`;

test('a partitioned disk: growpart, then the filesystem, found by serial', () => {
  const probe = `disk vdb\npart vdb1 1\n${mounts}\ntool growpart\ntool resize2fs\ntool xfs_growfs\n`;
  assert.deepEqual(planGrowth(probe, 'tern-disk-1'), {
    steps: [
      { what: 'partition 1 of /dev/vdb', command: ['growpart', '/dev/vdb', '1'] },
      { what: 'xfs on /dev/vdb1 (/data)', command: ['xfs_growfs', '/data'] },
    ],
    skipped: [],
  });
});

test('a whole-disk ext4 filesystem needs no growpart', () => {
  const probe = `disk vdc\n${mounts}\ntool resize2fs\n`;
  assert.deepEqual(planGrowth(probe, 'tern-disk-2').steps, [
    { what: 'ext4 on /dev/vdc (/scratch)', command: ['resize2fs', '/dev/vdc'] },
  ]);
});

test('missing tools and other filesystems are said, never attempted', () => {
  assert.deepEqual(planGrowth(`disk vdc\n${mounts}\n`, 's'), {
    steps: [],
    skipped: ['ext4 on /dev/vdc (/scratch): e2fsprogs (resize2fs) is not installed in the guest'],
  });
  assert.deepEqual(planGrowth(`disk vdb\npart vdb1 1\n${mounts}\ntool xfs_growfs\n`, 's'), {
    steps: [],
    skipped: ['xfs on /dev/vdb1 (/data): cloud-guest-utils (growpart) is not installed in the guest'],
  });
  const btrfs = planGrowth(`disk vdd\npart vdd1 1\npart vdd2 2\n${mounts}\ntool growpart\n`, 's');
  assert.deepEqual(btrfs.steps, [
    { what: 'partition 2 of /dev/vdd', command: ['growpart', '/dev/vdd', '2'] },
  ]);
  assert.deepEqual(btrfs.skipped, [
    'btrfs on /dev/vdd2 (/var): Tern grows ext2/3/4 and xfs filesystems, not btrfs',
  ]);
});

test('a disk the guest does not show by its serial, or shows twice, is not guessed at', () => {
  assert.match(planGrowth(mounts, 'tern-disk-3').skipped[0], /no disk with serial tern-disk-3/);
  assert.match(planGrowth(`disk vda\ndisk vdb\n${mounts}`, 'x').skipped[0], /2 disks with serial x/);
  assert.deepEqual(planGrowth('disk vde\n', 'x').skipped, [
    'no filesystem of /dev/vde is mounted in the guest',
  ]);
});

const b64 = (s: string) => Buffer.from(s).toString('base64');
const result = (exitCode: number, stdout = '', stderr = ''): GuestExecResult => ({
  exitCode,
  signal: null,
  stdout: b64(stdout),
  stderr: b64(stderr),
  stdoutTruncated: false,
  stderrTruncated: false,
  pid: 1,
  durationMs: 1,
});

test('growInGuest runs the plan: NOCHANGE is fine, a failed partition holds its filesystem back', async () => {
  const ran: string[][] = [];
  const exec = (answers: Record<string, GuestExecResult>) => async (req: GuestExecRequest) => {
    ran.push(req.command);
    const tool = req.command[2] === probeScript ? 'probe' : req.command[4];
    return answers[tool];
  };
  const probe = result(0, `disk vdb\npart vdb1 1\n${mounts}\ntool growpart\ntool xfs_growfs\n`);
  const ok = await growInGuest(
    exec({ probe, growpart: result(1, 'NOCHANGE: partition 1 is size 100'), xfs_growfs: result(0) }),
    'tern-disk-1',
  );
  assert.deepEqual(ok.grown, ['partition 1 of /dev/vdb', 'xfs on /dev/vdb1 (/data)']);
  assert.equal(ok.message, 'grown inside the guest: partition 1 of /dev/vdb, xfs on /dev/vdb1 (/data)');
  assert.deepEqual(ran.at(-1), [
    'sh',
    '-c',
    'PATH=/usr/local/sbin:/usr/sbin:/sbin:$PATH exec "$@"',
    'sh',
    'xfs_growfs',
    '/data',
  ]);

  const failed = await growInGuest(
    exec({ probe, growpart: result(2, '', 'FAILED: disk is busy') }),
    'tern-disk-1',
  );
  assert.deepEqual(failed.grown, []);
  assert.deepEqual(failed.notGrown, [
    'partition 1 of /dev/vdb: growpart failed (exit 2): FAILED: disk is busy',
    'xfs on /dev/vdb1 (/data): not grown, its partition was not',
  ]);
  assert.match(failed.message, /^the filesystem was not grown: /);
});

test('a guest without sh or without an answering agent: the report says so, nothing throws', async () => {
  const r = await growInGuest(async () => {
    throw new Error('VM w could not start sh: No such file or directory');
  }, 'tern-disk-0');
  assert.equal(
    r.message,
    'the filesystem was not grown: nothing was grown inside the guest: VM w could not start sh: No such file or directory',
  );
});
