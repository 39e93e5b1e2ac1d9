/**
 * Restoring backups with the real qemu-nbd, and what keeps a datastore whole: a disk image
 * written by qemu-io (as a guest would) is backed up over NBD, restored onto fresh and used
 * volumes through qemu-nbd and Tern's NBD writes, and compared byte for byte; a corrupted
 * chunk is found by verify and fails the restore that needs it, named; garbage collection
 * while a backup runs loses nothing; a full datastore fails clearly and corrupts nothing; an
 * encrypted datastore holds no plaintext. No VM is booted.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { NbdClient } from '../src/agent/backup/nbd/client.ts';
import { serveImage } from '../src/agent/backup/qemu-nbd.ts';
import { restoreDisk } from '../src/agent/backup/restore.ts';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import { FixedIndex } from '../src/backup/datastore/fixed-index.ts';
import { collectGarbage } from '../src/backup/datastore/gc.ts';
import { verifyBackups } from '../src/backup/datastore/verify.ts';
import { rejectsWith } from '../src/testing.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-backup-restore-'));
const mounts: string[] = [];
after(() => {
  for (const m of mounts) execFileSync('umount', ['-l', m]);
  fs.rmSync(dir, { recursive: true, force: true });
});

const K = 1024;
const M = 1024 * K;
const SIZE = 32 * M;
const CHUNK = 256 * K;
const HOUR = 3600_000;
const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const PATTERN = 'TERN-PLAINTEXT-MARKER:customer-ledger;';

function makeDisk(name: string, format: 'qcow2' | 'raw' = 'qcow2', size = SIZE): string {
  const file = path.join(dir, name);
  run('qemu-img', 'create', '-q', '-f', format, file, String(size));
  return file;
}

/** Writes as a guest would: qemu-io commands against the image. */
function write(file: string, ...ops: string[]) {
  run('qemu-io', '-f', 'qcow2', ...ops.flatMap((op) => ['-c', op]), file);
}

/** The image's bytes as QEMU reads them. */
function bytesOf(file: string, format = 'qcow2'): Buffer {
  const raw = path.join(dir, `${path.basename(file)}.raw`);
  run('qemu-img', 'convert', '-U', '-f', format, '-O', 'raw', file, raw);
  const out = fs.readFileSync(raw);
  fs.rmSync(raw);
  return out;
}

/** A full backup of an image, read over NBD from qemu-nbd, as the backup writer reads a view. */
async function backUp(ds: Datastore, file: string, group: string, id: string) {
  const served = await serveImage(file, { format: 'qcow2', readOnly: true });
  try {
    const nbd = await NbdClient.connect({ path: served.socket }, { exportName: served.exportName });
    try {
      const index = new FixedIndex(nbd.size, CHUNK);
      for (let i = 0; i < index.count; i++) {
        const { offset, length } = index.range(i);
        index.setDigest(i, (await ds.chunks.insert(await nbd.read(offset, length))).digest);
      }
      await ds.commitBackup(group, id, [{ name: 'disk0', index }]);
      return index;
    } finally {
      await nbd.disconnect();
    }
  } finally {
    await served.close();
  }
}

const restoreOnto = (ds: Datastore, id: string, file: string, format: 'qcow2' | 'raw' = 'qcow2') =>
  restoreDisk(ds, { group: 'vm-1', id, disk: 'disk0', file, format, bandwidth: 0, progress: () => {} });

/** A disk with text, random data, untouched holes and a written block of zeroes. */
function guestWrites(file: string) {
  const text = path.join(dir, 'text');
  fs.writeFileSync(text, PATTERN.repeat(Math.ceil((2 * M) / PATTERN.length)).slice(0, 2 * M));
  const random = path.join(dir, 'random');
  fs.writeFileSync(random, randomBytes(3 * M));
  write(
    file,
    'write -q -P 0x5a 0 1M',
    'write -q -z 12M 1M',
    `write -q -s ${text} 4M 2M`,
    `write -q -s ${random} 20M 3M`,
    'write -q -P 0x33 31M 100k',
  );
}

test('a backup restores byte for byte onto a fresh qcow2, a raw volume and a used one; zeroes cost no writes', async () => {
  const disk = makeDisk('disk.qcow2');
  guestWrites(disk);
  const want = bytesOf(disk);
  const ds = await Datastore.create(path.join(dir, 'plain'));
  await backUp(ds, disk, 'vm-1', 'one');

  const fresh = makeDisk('fresh.qcow2');
  let reports = 0;
  const r = await restoreDisk(ds, {
    group: 'vm-1',
    id: 'one',
    disk: 'disk0',
    file: fresh,
    format: 'qcow2',
    bandwidth: 0,
    progress: (p) => {
      reports++;
      assert.ok(p.doneBytes <= p.totalBytes && p.totalBytes === SIZE);
    },
  });
  assert.ok(reports > 0);
  assert.equal(r.sizeBytes, SIZE);
  assert.equal(r.sha256, sha(want));
  assert.deepEqual(bytesOf(fresh), want);
  // 1 MiB + 2 MiB + 3 MiB + the chunk holding 31M..+100k: chunks of zeroes are not written.
  assert.equal(r.writtenBytes, 6 * M + CHUNK);
  const allocated = JSON.parse(run('qemu-img', 'map', '--output=json', fresh)) as {
    data: boolean;
    length: number;
  }[];
  assert.ok(
    allocated.filter((e) => e.data).reduce((n, e) => n + e.length, 0) <= 6 * M + CHUNK,
    'zero chunks stay holes in the restored qcow2',
  );

  // A used volume (another disk's data everywhere), raw, larger than the disk: every byte of the disk comes back.
  const used = makeDisk('used.raw', 'raw', SIZE + M);
  fs.writeFileSync(used, Buffer.alloc(SIZE + M, 0xee));
  const again = await restoreOnto(ds, 'one', used, 'raw');
  assert.equal(again.sha256, sha(want));
  assert.deepEqual(fs.readFileSync(used).subarray(0, SIZE), want);

  const small = makeDisk('small.qcow2', 'qcow2', SIZE / 2);
  await rejectsWith(restoreOnto(ds, 'one', small), 'invalid_request', /target volume holds/);
  await rejectsWith(restoreOnto(ds, 'none', fresh), 'not_found', /not found/);
});

test('a corrupted chunk is found by verify, and a restore that needs it fails loudly, naming it', async () => {
  const disk = makeDisk('corrupt.qcow2');
  guestWrites(disk);
  const ds = await Datastore.create(path.join(dir, 'corrupt'));
  const index = await backUp(ds, disk, 'vm-1', 'one');
  // The chunk at 4 MiB holds the text; flip one byte of its file.
  const i = (4 * M) / CHUNK;
  const victim = ds.chunks.pathOf(index.digest(i));
  const bytes = fs.readFileSync(victim);
  bytes[Math.floor(bytes.length / 2)]! ^= 0x40;
  fs.writeFileSync(victim, bytes);

  const target = makeDisk('corrupt-target.qcow2');
  await rejectsWith(
    restoreOnto(ds, 'one', target),
    'storage_error',
    new RegExp(`chunk ${i}: .*${index.digest(i)}`),
  );
  const v = await verifyBackups(ds, [{ group: 'vm-1', id: 'one' }]);
  assert.equal(v.backups[0]?.ok, false);
  assert.deepEqual(v.backups[0]?.problems.length, 1);
  assert.match(v.backups[0]!.problems[0]!, new RegExp(`disk disk0 chunk ${i} \\(${index.digest(i)}\\)`));
  // Set aside by verify: the restore still fails, naming the chunk now missing.
  await rejectsWith(
    restoreOnto(ds, 'one', target),
    'storage_error',
    new RegExp(`${index.digest(i)} is missing`),
  );
  // The next backup of the same disk writes the chunk whole again, and restores.
  await backUp(ds, disk, 'vm-1', 'two');
  assert.equal((await restoreOnto(ds, 'two', target)).sha256, sha(bytesOf(disk)));
});

test('garbage collection while a backup runs loses nothing it uses', async () => {
  const disk = makeDisk('gc.qcow2');
  guestWrites(disk);
  const ds = await Datastore.create(path.join(dir, 'gc'));
  // Every chunk of the disk is in the store, named by no backup any more, and old.
  await backUp(ds, disk, 'vm-1', 'old');
  await ds.forgetBackup('vm-1', 'old');
  const old = new Date(Date.now() - 24 * HOUR);
  for (const e of fs.readdirSync(path.join(ds.dir, 'chunks'), { recursive: true, withFileTypes: true }))
    fs.utimesSync(path.join(e.parentPath, e.name), old, old);

  // A backup of the same disk starts now; collections run while it finds (and touches) chunks.
  const protectSince = new Date(Date.now() - HOUR);
  const collections: Promise<unknown>[] = [];
  const backup = (async () => {
    const served = await serveImage(disk, { format: 'qcow2', readOnly: true });
    const nbd = await NbdClient.connect({ path: served.socket }, { exportName: served.exportName });
    const index = new FixedIndex(nbd.size, CHUNK);
    for (let i = 0; i < index.count; i++) {
      const { offset, length } = index.range(i);
      index.setDigest(i, (await ds.chunks.insert(await nbd.read(offset, length))).digest);
      if (i % 16 === 8) collections.push(collectGarbage(ds, protectSince));
    }
    await nbd.disconnect();
    await served.close();
    await ds.commitBackup('vm-1', 'new', [{ name: 'disk0', index }]);
  })();
  await backup;
  const results = (await Promise.all(collections)) as { chunksRemoved: number }[];
  assert.ok(results.length >= 4);
  assert.ok(
    results.some((r) => r.chunksRemoved > 0),
    'chunks the backup had not reached yet were swept',
  );
  const v = await verifyBackups(ds, [{ group: 'vm-1', id: 'new' }]);
  assert.deepEqual(v.backups[0]?.problems, []);
  assert.equal((await restoreOnto(ds, 'new', makeDisk('gc-target.qcow2'))).sha256, sha(bytesOf(disk)));
  assert.equal((await collectGarbage(ds, protectSince)).chunksRemoved, 0);
});

test('a full datastore fails the backup clearly and corrupts nothing', async () => {
  const mnt = path.join(dir, 'small');
  fs.mkdirSync(mnt);
  run('mount', '-t', 'tmpfs', '-o', 'size=6m', 'tern-test-small', mnt);
  mounts.push(mnt);
  const ds = await Datastore.create(path.join(mnt, 'ds'));
  const first = makeDisk('first.qcow2', 'qcow2', 4 * M);
  write(first, 'write -q -P 0x61 0 1M');
  await backUp(ds, first, 'vm-1', 'one');

  const big = makeDisk('big.qcow2');
  guestWrites(big);
  const more = path.join(dir, 'more-random');
  fs.writeFileSync(more, randomBytes(4 * M));
  write(big, `write -q -s ${more} 8M 4M`);
  await rejectsWith(backUp(ds, big, 'vm-2', 'one'), 'storage_error', /datastore .* is full \(ENOSPC\)/);

  assert.deepEqual(await ds.listBackups(), [{ group: 'vm-1', id: 'one' }]);
  assert.deepEqual((await verifyBackups(ds, [{ group: 'vm-1', id: 'one' }])).backups[0]?.problems, []);
  // Only whole chunks under their names: every one reads back verified.
  for await (const f of ds.chunks.files()) if (f.digest) await ds.chunks.read(f.digest);
  // A day later, nothing running: what the failed backup left is old.
  const old = new Date(Date.now() - 24 * HOUR);
  for (const e of fs.readdirSync(ds.dir, { recursive: true, withFileTypes: true }))
    fs.utimesSync(path.join(e.parentPath, e.name), old, old);
  const gc = await collectGarbage(ds, new Date(Date.now() - HOUR));
  assert.ok(gc.chunksRemoved + gc.temporariesRemoved > 0, 'what the failed backup wrote is swept');
  for await (const f of ds.chunks.files()) assert.ok(f.digest, `${f.file} is left`);
  assert.equal(
    (await restoreOnto(ds, 'one', makeDisk('full-target.qcow2', 'qcow2', 4 * M))).sha256,
    sha(bytesOf(first)),
  );
});

test('a restore onto a volume whose storage is full fails clearly', async () => {
  const disk = makeDisk('to-full.qcow2');
  guestWrites(disk);
  const ds = await Datastore.create(path.join(dir, 'to-full'));
  await backUp(ds, disk, 'vm-1', 'one');
  const mnt = path.join(dir, 'small-pool');
  fs.mkdirSync(mnt);
  run('mount', '-t', 'tmpfs', '-o', 'size=4m', 'tern-test-small-pool', mnt);
  mounts.push(mnt);
  const target = path.join(mnt, 'target.raw');
  run('qemu-img', 'create', '-q', '-f', 'raw', target, String(SIZE));
  await rejectsWith(
    restoreOnto(ds, 'one', target, 'raw'),
    'storage_error',
    /target\.raw is full: disk0 is only partly restored/,
  );
});

test('an encrypted datastore holds no plaintext, and restores with its key', async () => {
  const disk = makeDisk('secret.qcow2');
  guestWrites(disk);
  const ds = await Datastore.create(path.join(dir, 'enc'), { key: randomBytes(32) });
  await backUp(ds, disk, 'vm-1', 'one');
  const want = bytesOf(disk);
  const needles = [
    Buffer.from(PATTERN),
    want.subarray(20 * M, 20 * M + 64),
    Buffer.from(sha(want.subarray(4 * M, 4 * M + CHUNK)), 'hex'),
    Buffer.from(sha(want.subarray(4 * M, 4 * M + CHUNK))),
  ];
  let files = 0;
  for (const e of fs.readdirSync(ds.dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile()) continue;
    const bytes = fs.readFileSync(path.join(e.parentPath, e.name));
    for (const n of needles) assert.equal(bytes.indexOf(n), -1, `${e.name} holds plaintext`);
    assert.ok(
      !e.name.includes(sha(want.subarray(4 * M, 4 * M + CHUNK))),
      'no chunk is named by its plain SHA-256',
    );
    files++;
  }
  assert.ok(files > (3 * M) / CHUNK, 'the random part alone is 12 chunks');
  assert.equal((await restoreOnto(ds, 'one', makeDisk('secret-target.qcow2'))).sha256, sha(want));
});
