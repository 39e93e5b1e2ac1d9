import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { volumeSnapshot } from './volumes.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-revert-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const bitmaps = (file: string): string[] =>
  (
    JSON.parse(execFileSync('qemu-img', ['info', '--output=json', file], { encoding: 'utf8' }))[
      'format-specific'
    ].data.bitmaps ?? []
  ).map((b: { name: string }) => b.name);

test('a snapshot revert of a backed-up disk works, and removes its backup bitmaps, which no longer tell what changed (qemu-img refuses a revert under any bitmap)', async () => {
  const file = path.join(dir, 'disk.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
  // As backups leave them: the newest recording, an older one stopped.
  execFileSync('qemu-img', ['bitmap', '--add', file, 'tern-bk-1a2b3c4d-b2']);
  execFileSync('qemu-img', ['bitmap', '--add', '--disable', file, 'tern-bk-1a2b3c4d-b1']);
  const pools = { local: dir };
  const volume = { pool: 'local', path: 'disk.qcow2' };
  await volumeSnapshot(pools, { volume, op: 'create', name: 's1' });
  assert.equal(bitmaps(file).length, 2, 'taking a snapshot keeps them');
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x55 0 64k', file]);
  await volumeSnapshot(pools, { volume, op: 'apply', name: 's1' });
  assert.deepEqual(bitmaps(file), []);
  // The write after the snapshot is gone: the disk is as it was.
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0 0 64k', file]);
});

test('a snapshot revert of a replicated disk removes its replication bitmaps too: the next cycle sends it whole rather than building on a bitmap that missed the revert', async () => {
  const file = path.join(dir, 'replicated.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '16M']);
  execFileSync('qemu-img', ['bitmap', '--add', file, 'tern-rp-0b4a1c9e-2026-12-07T18-00-30Z']);
  execFileSync('qemu-img', ['bitmap', '--add', file, 'tern-bk-1a2b3c4d-b1']);
  const pools = { local: dir };
  const volume = { pool: 'local', path: 'replicated.qcow2' };
  await volumeSnapshot(pools, { volume, op: 'create', name: 's1' });
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x55 0 64k', file]);
  await volumeSnapshot(pools, { volume, op: 'apply', name: 's1' });
  assert.deepEqual(bitmaps(file), []);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0 0 64k', file]);
});
