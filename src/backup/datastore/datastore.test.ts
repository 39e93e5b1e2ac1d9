import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { rejectsWith } from '../../testing.ts';
import { Datastore } from './datastore.ts';
import { FixedIndex } from './fixed-index.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-datastore-'));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `ds${n++}`);
const CHUNK = 64 * 1024;

/** Backs a disk image (held in memory) up into the datastore the way a backup will. */
async function backUp(ds: Datastore, disk: Buffer, group: string, id: string) {
  const index = new FixedIndex(disk.length, CHUNK);
  let written = 0;
  for (let i = 0; i < index.count; i++) {
    const { offset, length } = index.range(i);
    const r = await ds.chunks.insert(disk.subarray(offset, offset + length));
    index.setDigest(i, r.digest);
    if (r.written) written++;
  }
  return { manifest: await ds.commitBackup(group, id, [{ name: 'vda', index }], { vm: group }), written };
}

async function restore(ds: Datastore, group: string, id: string): Promise<Buffer> {
  const manifest = await ds.readManifest(group, id);
  const index = await ds.readIndex(manifest, 'vda');
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) parts.push(await ds.readChunk(index, i));
  return Buffer.concat(parts);
}

async function filesUnder(dir: string): Promise<string[]> {
  const names = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return names.filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

/** A disk with a known pattern, some random data, zeroes, and a short last chunk. */
function sampleDisk(): Buffer {
  const text = Buffer.from('ACCOUNT-LEDGER row 0042: Alice owes Bob 17 euros. '.repeat(3000));
  return Buffer.concat([text, randomBytes(3 * CHUNK), Buffer.alloc(4 * CHUNK), text.subarray(0, 5000)]);
}

test('a backup restores to the same bytes, and a second backup of the same disk writes no chunk', async () => {
  const ds = await Datastore.create(fresh());
  const disk = sampleDisk();
  const first = await backUp(ds, disk, 'vm-1', '2026-12-07T10:00:00Z');
  assert.ok(first.written > 0);
  assert.ok(first.written < Math.ceil(disk.length / CHUNK), 'the zero chunks are stored once');
  assert.deepEqual(await restore(ds, 'vm-1', '2026-12-07T10:00:00Z'), disk);
  const second = await backUp(ds, disk, 'vm-1', '2026-12-07T11:00:00Z');
  assert.equal(second.written, 0);
  assert.deepEqual(await restore(ds, 'vm-1', '2026-12-07T11:00:00Z'), disk);
  await rejectsWith(backUp(ds, disk, 'vm-1', '2026-12-07T11:00:00Z'), 'conflict', /exists already/);
  const partial = new FixedIndex(disk.length, CHUNK);
  await rejectsWith(
    ds.commitBackup('vm-1', 'partial', [{ name: 'vda', index: partial }]),
    'internal',
    /unnamed/,
  );
});

test('a damaged, truncated or missing chunk fails the read loudly, naming the chunk', async () => {
  const ds = await Datastore.create(fresh());
  const disk = sampleDisk();
  await backUp(ds, disk, 'vm-1', 'b1');
  const index = await ds.readIndex(await ds.readManifest('vm-1', 'b1'), 'vda');
  const victim = ds.chunks.pathOf(index.digest(1));
  const bytes = await fs.readFile(victim);
  bytes[Math.floor(bytes.length / 2)]! ^= 0xff;
  await fs.writeFile(victim, bytes);
  const err = await rejectsWith(restore(ds, 'vm-1', 'b1'), 'storage_error', /damaged/);
  assert.equal(err.details?.chunk, index.digest(1));
  await fs.truncate(victim, 20);
  await rejectsWith(restore(ds, 'vm-1', 'b1'), 'storage_error', /damaged/);
  await fs.rm(victim);
  await rejectsWith(restore(ds, 'vm-1', 'b1'), 'storage_error', /missing/);
});

test('a damaged index or manifest, or an index swapped in from another backup, is refused', async () => {
  const ds = await Datastore.create(fresh());
  await backUp(ds, sampleDisk(), 'vm-1', 'b1');
  await backUp(ds, randomBytes(5 * CHUNK), 'vm-1', 'b2');
  const dir = (id: string) => path.join(ds.dir, 'backups', 'vm-1', id);
  await fs.copyFile(path.join(dir('b2'), 'vda.fidx'), path.join(dir('b1'), 'vda.fidx'));
  await rejectsWith(restore(ds, 'vm-1', 'b1'), 'storage_error', /index of vda .*damaged/);
  await fs.writeFile(path.join(dir('b2'), 'manifest.json'), '{"manifest":{"format":"nope"},"mac":null}');
  await rejectsWith(ds.readManifest('vm-1', 'b2'), 'storage_error', /manifest is damaged/);
  await rejectsWith(ds.readManifest('vm-1', '../../etc'), 'invalid_request');
});

test('an encrypted datastore holds no plaintext: no content, no SHA-256 of content, manifests authenticated', async () => {
  const dir = fresh();
  const key = randomBytes(32);
  const ds = await Datastore.create(dir, { key });
  const disk = sampleDisk();
  await backUp(ds, disk, 'vm-1', 'b1');
  assert.deepEqual(await restore(ds, 'vm-1', 'b1'), disk);

  // Every 32-byte window of the disk's distinct chunks, and their plain SHA-256 names.
  const needles: Buffer[] = [Buffer.from('ACCOUNT-LEDGER'), Buffer.from('Alice owes Bob')];
  for (let off = 0; off < disk.length; off += CHUNK) {
    const piece = disk.subarray(off, off + CHUNK);
    if (piece.every((b) => b === 0)) continue;
    needles.push(piece.subarray(1000, 1032));
    const sha = createHash('sha256').update(piece).digest();
    needles.push(sha, Buffer.from(sha.toString('hex')));
  }
  const files = await filesUnder(dir);
  assert.ok(files.length > 5);
  for (const file of files) {
    const bytes = await fs.readFile(file);
    for (const needle of needles)
      assert.equal(bytes.indexOf(needle), -1, `${path.relative(dir, file)} holds plaintext or its hash`);
    assert.ok(!bytes.includes(key), `${file} holds the key`);
  }

  await rejectsWith(Datastore.open(dir), 'invalid_request', /its key is needed/);
  await rejectsWith(Datastore.open(dir, { key: randomBytes(32) }), 'invalid_request', /not the key given/);
  const reopened = await Datastore.open(dir, { key });
  assert.deepEqual(await restore(reopened, 'vm-1', 'b1'), disk);

  // Someone with write access but no key cannot alter a manifest (here: a label) unnoticed.
  const manifestFile = path.join(dir, 'backups', 'vm-1', 'b1', 'manifest.json');
  const text = await fs.readFile(manifestFile, 'utf8');
  await fs.writeFile(manifestFile, text.replace('"vm":"vm-1"', '"vm":"vm-2"'));
  await rejectsWith(reopened.readManifest('vm-1', 'b1'), 'storage_error', /MAC does not verify/);
});

test('concurrent writers of the same chunks, with readers among them, leave whole chunks only', async () => {
  const dir = fresh();
  await Datastore.create(dir);
  const stores = await Promise.all([1, 2, 3, 4].map(() => Datastore.open(dir)));
  const chunks = Array.from({ length: 8 }, () => randomBytes(1024 * 1024));
  const digests = chunks.map((c) => stores[0]!.chunks.digestOf(c));
  let readsSeen = 0;
  const reader = async (s: Datastore) => {
    for (let round = 0; round < 20; round++)
      for (const [i, d] of digests.entries()) {
        try {
          assert.deepEqual(await s.chunks.read(d), chunks[i]);
          readsSeen++;
        } catch (err) {
          // Not yet written is the only acceptable failure: never a half-written chunk.
          assert.equal((err as { details?: { missing?: boolean } }).details?.missing, true, String(err));
        }
      }
  };
  const results = await Promise.all([
    ...stores.flatMap((s) => chunks.map((c) => s.chunks.insert(c))),
    ...stores.flatMap((s) => chunks.map((c) => s.chunks.insert(c))),
    reader(stores[0]!),
    reader(stores[3]!),
  ]);
  assert.ok(results.length > 0);
  // New chunks are named in batches, at the latest when a backup's commit flushes.
  await Promise.all(stores.map((s) => s.chunks.flush()));
  for (const [i, d] of digests.entries()) assert.deepEqual(await stores[1]!.chunks.read(d), chunks[i]);
  const left = await filesUnder(path.join(dir, 'chunks'));
  assert.equal(
    left.length,
    chunks.length,
    `only finished chunks remain: ${left.map((f) => path.basename(f))}`,
  );
  assert.ok(readsSeen > 0);
});

test('a datastore is created once, and a directory that is none is refused on open', async () => {
  const dir = fresh();
  await Datastore.create(dir);
  await rejectsWith(Datastore.create(dir), 'conflict', /datastore already/);
  await rejectsWith(Datastore.open(fresh()), 'not_found', /not a datastore/);
  await rejectsWith(Datastore.open(dir, { key: randomBytes(32) }), 'invalid_request', /not encrypted/);
});

test('a chunk whose write was cut off leaves only a temporary, never a short chunk under its name', async () => {
  const ds = await Datastore.create(fresh());
  const data = randomBytes(100_000);
  const digest = ds.chunks.digestOf(data);
  const file = ds.chunks.pathOf(digest);
  await fs.mkdir(path.dirname(file), { recursive: true });
  // What a writer killed before its rename leaves behind.
  await fs.writeFile(`${file}.tmp-4242-abcdef`, data.subarray(0, 4096));
  assert.equal(await ds.chunks.has(digest), false);
  await rejectsWith(ds.chunks.read(digest), 'storage_error', /missing/);
  assert.equal((await ds.chunks.insert(data)).written, true);
  assert.deepEqual(await ds.chunks.read(digest), data);
});

test('writer processes inserting the same chunks at once leave each chunk whole, readable by a third', async () => {
  const dir = fresh();
  await Datastore.create(dir);
  // Each writer makes the same 12 chunks of 512 KiB from a seed and inserts them 3 times over.
  const script = `
    const { ChunkStore } = await import(${JSON.stringify(new URL('./chunk-store.ts', import.meta.url).pathname)});
    const { createHash } = await import('node:crypto');
    const store = new ChunkStore(${JSON.stringify(path.join(dir, 'chunks'))});
    const chunk = (i) => {
      const parts = [];
      for (let n = 0; n < 16384; n++) parts.push(createHash('sha256').update(i + ':' + n).digest());
      return Buffer.concat(parts);
    };
    const chunks = Array.from({ length: 12 }, (_, i) => chunk(i));
    for (let round = 0; round < 3; round++) await Promise.all(chunks.map((c) => store.insert(c)));
    await store.flush();
  `;
  const writer = () =>
    new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'inherit' });
      child.on('exit', resolve);
    });
  const reader = await Datastore.open(dir);
  const expected = Array.from({ length: 12 }, (_, i) => {
    const parts: Buffer[] = [];
    for (let n = 0; n < 16384; n++) parts.push(createHash('sha256').update(`${i}:${n}`).digest());
    return Buffer.concat(parts);
  });
  const digests = expected.map((c) => reader.chunks.digestOf(c));
  const writers = Promise.all([writer(), writer(), writer()]);
  let done = false;
  void writers.then(() => {
    done = true;
  });
  while (!done) {
    for (const [i, d] of digests.entries())
      await reader.chunks.read(d).then(
        (data) => {
          assert.deepEqual(data, expected[i]);
        },
        (err: { details?: { missing?: boolean } }) => assert.equal(err.details?.missing, true, String(err)),
      );
  }
  assert.deepEqual(await writers, [0, 0, 0]);
  for (const [i, d] of digests.entries()) assert.deepEqual(await reader.chunks.read(d), expected[i]);
  assert.equal((await filesUnder(path.join(dir, 'chunks'))).length, 12, 'no temporaries left');
});

test('only backups with a manifest are listed; forget removes one whole, and one not there is done', async () => {
  const ds = await Datastore.create(fresh());
  const disk = sampleDisk();
  await backUp(ds, disk, 'vm-b', '2026-12-07T10-00-00Z');
  await backUp(ds, disk, 'vm-a', '2026-12-07T09-00-00Z');
  await backUp(ds, disk, 'vm-a', '2026-12-07T11-00-00Z');
  // A backup cut off before its manifest: its directory and index only.
  const partial = path.join(ds.dir, 'backups', 'vm-a', '2026-12-07T12-00-00Z');
  await fs.mkdir(partial);
  await fs.writeFile(path.join(partial, 'vda.fidx'), 'half');
  assert.deepEqual(await ds.listBackups(), [
    { group: 'vm-a', id: '2026-12-07T09-00-00Z' },
    { group: 'vm-a', id: '2026-12-07T11-00-00Z' },
    { group: 'vm-b', id: '2026-12-07T10-00-00Z' },
  ]);
  assert.deepEqual(await ds.listBackups('vm-b'), [{ group: 'vm-b', id: '2026-12-07T10-00-00Z' }]);
  assert.deepEqual(await ds.listBackups('vm-none'), []);
  await ds.forgetBackup('vm-a', '2026-12-07T09-00-00Z');
  await ds.forgetBackup('vm-a', '2026-12-07T12-00-00Z');
  await ds.forgetBackup('vm-a', '2026-12-07T12-00-00Z');
  await ds.forgetBackup('vm-b', '2026-12-07T10-00-00Z');
  assert.deepEqual(await ds.listBackups(), [{ group: 'vm-a', id: '2026-12-07T11-00-00Z' }]);
  assert.deepEqual(await fs.readdir(path.join(ds.dir, 'backups')), ['vm-a'], 'an empty group goes too');
  assert.deepEqual(await restore(ds, 'vm-a', '2026-12-07T11-00-00Z'), disk, 'what is left still restores');
  await rejectsWith(ds.forgetBackup('..', 'x'), 'invalid_request', /bad backup group/);
  await rejectsWith(ds.forgetBackup('vm-a', '../vm-b'), 'invalid_request', /bad backup name/);
});
