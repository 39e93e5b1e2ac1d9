import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { FixedIndex } from '../../backup/datastore/fixed-index.ts';
import { createLogger } from '../../log.ts';
import { rejectsWith } from '../../testing.ts';
import { BackupFiles } from './backup-files.ts';

const run = promisify(execFile);
const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-backup-files-'));
after(() => fs.rm(root, { recursive: true, force: true }));
const secret = randomBytes(300_000);
const key = randomBytes(32);
let files: BackupFiles;
const req = (p: string, partition?: number) => ({
  datastore: { path: path.join(root, 'ds'), key: key.toString('base64') },
  group: 'vm-1',
  id: 'b1',
  disk: 'disk0',
  path: p,
  ...(partition ? { partition } : {}),
});

before(async () => {
  // A guest's disk: a GPT table and an ext4 partition at 1 MiB holding a small tree.
  const tree = path.join(root, 'tree');
  await fs.mkdir(path.join(tree, 'etc/app'), { recursive: true });
  await fs.writeFile(path.join(tree, 'etc/hostname'), 'ledger-01\n');
  await fs.writeFile(path.join(tree, 'etc/app/data.bin'), secret);
  await fs.symlink('app/data.bin', path.join(tree, 'etc/current'));
  const image = path.join(root, 'disk.raw');
  await fs.writeFile(image, Buffer.alloc(0));
  await fs.truncate(image, 48 * 1024 * 1024);
  await run('sh', [
    '-c',
    `printf 'label: gpt\\nstart=2048, size=90112, type=linux, name=root\\n' | sfdisk -q ${image}`,
  ]);
  await run('mkfs.ext4', ['-q', '-F', '-d', tree, '-E', 'offset=1048576', image, '44M']);
  const disk = await fs.readFile(image);
  const store = await Datastore.create(path.join(root, 'ds'), { key });
  const index = new FixedIndex(disk.length, 1024 * 1024);
  for (let i = 0; i < index.count; i++) {
    const { offset, length } = index.range(i);
    index.setDigest(i, (await store.chunks.insert(disk.subarray(offset, offset + length))).digest);
  }
  await store.commitBackup('vm-1', 'b1', [{ name: 'disk0', index }]);
  files = new BackupFiles(path.join(root, 'state'), createLogger('backup-files-test', 'error'));
});

test('a directory of a backup lists with types and sizes, from the partition found on the disk', async () => {
  const listing = await files.list(req('/etc'));
  assert.equal(listing.partition, 1);
  assert.equal(listing.partitions.length, 1);
  assert.equal(listing.partitions[0]!.startBytes, 1024 * 1024);
  assert.deepEqual(
    listing.entries.map((e) => [e.name, e.type, e.size]),
    [
      ['app', 'directory', 0],
      ['current', 'symlink', 0],
      ['hostname', 'file', 10],
    ],
  );
  await rejectsWith(files.list(req('/nowhere')), 'not_found', /not in the backup/);
  await rejectsWith(files.list(req('/etc', 7)), 'not_found', /no partition 7/);
});

test('a file of a backup reads back byte for byte, through a symbolic link too; what is not a file is refused', async () => {
  const direct = await files.read(req('/etc/app/data.bin'), 1024 ** 3);
  assert.deepEqual(await fs.readFile(direct.file), secret);
  const linked = await files.read(req('/etc/./current'), 1024 ** 3);
  assert.deepEqual(await fs.readFile(linked.file), secret);
  await rejectsWith(files.read(req('/etc/app'), 1024 ** 3), 'invalid_request', /not a regular file/);
  await rejectsWith(files.read(req('/etc/app/data.bin'), 1000), 'invalid_request', /at most 1000/);
  await rejectsWith(files.read(req('/etc/"x'), 1000), 'invalid_request');
  // Every session is gone: no daemon, no mount, only the files handed out.
  const left = await fs.readdir(path.join(root, 'state/backup-files'));
  assert.deepEqual(
    left.filter((n) => !n.startsWith('out-')),
    [],
  );
  const mounts = await fs.readFile('/proc/mounts', 'utf8');
  assert.ok(!mounts.includes(root), 'no FUSE mount is left behind');
});
