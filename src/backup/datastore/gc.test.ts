import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { rejectsWith } from '../../testing.ts';
import { Datastore } from './datastore.ts';
import { FixedIndex } from './fixed-index.ts';
import { collectGarbage } from './gc.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-gc-'));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const CHUNK = 4096;
const HOUR = 3600_000;

async function backUp(ds: Datastore, chunks: Buffer[], group: string, id: string) {
  const index = new FixedIndex(chunks.length * CHUNK, CHUNK);
  for (const [i, c] of chunks.entries()) index.setDigest(i, (await ds.chunks.insert(c)).digest);
  await ds.commitBackup(group, id, [{ name: 'disk0', index }]);
  return index;
}

/** Makes every file under `dir` look untouched for a day. */
async function age(dir: string) {
  const old = new Date(Date.now() - 24 * HOUR);
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true }))
    await fs.utimes(path.join(e.parentPath, e.name), old, old);
}

async function chunkFiles(ds: Datastore) {
  const out: string[] = [];
  for await (const f of ds.chunks.files()) out.push(path.basename(f.file));
  return out.sort();
}

test('gc removes chunks only forgotten backups named, keeps the rest, and a chunk touched after protectSince', async () => {
  const ds = await Datastore.create(path.join(root, `ds${n++}`));
  const shared = randomBytes(CHUNK);
  const [a, b, c] = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK)];
  await backUp(ds, [shared, a], 'vm-1', 'one');
  const kept = await backUp(ds, [shared, b], 'vm-1', 'two');
  await backUp(ds, [c], 'vm-2', 'one');
  await ds.forgetBackup('vm-1', 'one');
  await ds.forgetBackup('vm-2', 'one');
  // A commit cut off (an index, no manifest) and a chunk's temporary left by a crash.
  const cut = path.join(ds.dir, 'backups', 'vm-3', 'cut');
  await fs.mkdir(cut, { recursive: true });
  await fs.writeFile(path.join(cut, 'disk0.fidx'), 'x');
  const tmp = `${ds.chunks.pathOf(ds.chunks.digestOf(a))}.tmp-1-abc`;
  await fs.writeFile(tmp, 'half');
  await age(ds.dir);
  // A running backup found chunk c again (touching it) a minute ago, after protectSince.
  assert.equal((await ds.chunks.insert(c)).written, false);
  const cFile = ds.chunks.pathOf(ds.chunks.digestOf(c));
  await fs.utimes(cFile, new Date(Date.now() - 60_000), (await fs.stat(cFile)).mtime);

  const r = await collectGarbage(ds, new Date(Date.now() - HOUR));
  assert.deepEqual(r, {
    chunksKept: 2,
    bytesKept: r.bytesKept,
    chunksRemoved: 1,
    bytesRemoved: r.bytesRemoved,
    chunksProtected: 1,
    temporariesRemoved: 2,
  });
  assert.ok(r.bytesKept > 0 && r.bytesRemoved > 0);
  assert.deepEqual(
    await chunkFiles(ds),
    [ds.chunks.digestOf(shared), ds.chunks.digestOf(b), ds.chunks.digestOf(c)].sort(),
  );
  await assert.rejects(fs.access(cut));
  for (let i = 0; i < kept.count; i++) await ds.readChunk(kept, i);

  // Once c is as old as the rest, it goes too; a second run has nothing left to do.
  await age(ds.dir);
  const again = await collectGarbage(ds, new Date(Date.now() - HOUR));
  assert.equal(again.chunksRemoved, 1);
  assert.equal((await collectGarbage(ds, new Date(Date.now() - HOUR))).chunksRemoved, 0);
  await rejectsWith(collectGarbage(ds, new Date(Date.now() + HOUR)), 'invalid_request', /in the future/);
});

test('gc stops before removing anything when a backup it must mark cannot be read', async () => {
  const ds = await Datastore.create(path.join(root, `ds${n++}`));
  await backUp(ds, [randomBytes(CHUNK)], 'vm-1', 'one');
  await backUp(ds, [randomBytes(CHUNK)], 'vm-1', 'two');
  await ds.forgetBackup('vm-1', 'one');
  await fs.appendFile(path.join(ds.dir, 'backups', 'vm-1', 'two', 'disk0.fidx'), 'x');
  await age(ds.dir);
  const before = await chunkFiles(ds);
  await rejectsWith(
    collectGarbage(ds, new Date()),
    'storage_error',
    /vm-1\/two cannot be read.*nothing removed|nothing removed.*vm-1\/two/,
  );
  assert.deepEqual(await chunkFiles(ds), before);
});

test('a commit touches the chunks its index names, and refuses one the store lacks', async () => {
  const ds = await Datastore.create(path.join(root, `ds${n++}`));
  const data = randomBytes(CHUNK);
  const first = await backUp(ds, [data], 'vm-1', 'one');
  await age(ds.dir);
  // An incremental names the chunk without inserting it; meanwhile its first backup is forgotten.
  await ds.forgetBackup('vm-1', 'one');
  await ds.commitBackup('vm-1', 'two', [{ name: 'disk0', index: new FixedIndex(CHUNK, CHUNK, first) }]);
  assert.equal((await collectGarbage(ds, new Date(Date.now() - HOUR))).chunksKept, 1);
  await fs.rm(ds.chunks.pathOf(first.digest(0)));
  await rejectsWith(
    ds.commitBackup('vm-1', 'three', [{ name: 'disk0', index: new FixedIndex(CHUNK, CHUNK, first) }]),
    'storage_error',
    new RegExp(`chunk ${first.digest(0)} of disk disk0 is not in the datastore`),
  );
  assert.deepEqual(await ds.listBackups(), [{ group: 'vm-1', id: 'two' }]);
});
