import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { rejectsWith } from '../../testing.ts';
import { Datastore } from './datastore.ts';
import { FixedIndex } from './fixed-index.ts';
import { syncDatastore } from './sync.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-sync-'));
after(() => fs.rm(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `ds${n++}`);
const CHUNK = 64 * 1024;

async function backUp(ds: Datastore, disk: Buffer, group: string, id: string) {
  const index = new FixedIndex(disk.length, CHUNK);
  for (let i = 0; i < index.count; i++) {
    const { offset, length } = index.range(i);
    index.setDigest(i, (await ds.chunks.insert(disk.subarray(offset, offset + length))).digest);
  }
  return ds.commitBackup(group, id, [{ name: 'disk0', index }], { vm: group });
}

async function read(ds: Datastore, group: string, id: string): Promise<Buffer> {
  const m = await ds.readManifest(group, id);
  const index = await ds.readIndex(m, 'disk0');
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) parts.push(await ds.readChunk(index, i));
  return Buffer.concat(parts);
}

async function chunkFiles(ds: Datastore): Promise<string[]> {
  const all = await fs.readdir(path.join(ds.dir, 'chunks'), { recursive: true, withFileTypes: true });
  return all.filter((d) => d.isFile()).map((d) => d.name);
}

test('backups copy into a datastore of another key byte for byte, and the next sync reads only new chunks', async () => {
  const source = await Datastore.create(fresh(), { key: randomBytes(32) });
  const target = await Datastore.create(fresh(), { key: randomBytes(32) });
  const day1 = randomBytes(20 * CHUNK);
  const day2 = Buffer.from(day1);
  randomBytes(CHUNK).copy(day2, 5 * CHUNK);
  const first = await backUp(source, day1, 'vm-a', 'd1');
  const first1 = await syncDatastore(source, target, { encryptedOnly: true });
  assert.deepEqual(first1.copied, [{ group: 'vm-a', id: 'd1' }]);
  assert.equal(first1.chunksRead, 20);
  await backUp(source, day2, 'vm-a', 'd2');
  const second = await syncDatastore(source, target, { encryptedOnly: true });
  assert.deepEqual(second.copied, [{ group: 'vm-a', id: 'd2' }]);
  assert.equal(second.present, 1);
  assert.equal(second.chunksRead, 1, 'only the changed chunk is read again');
  assert.deepEqual(await read(target, 'vm-a', 'd1'), day1);
  assert.deepEqual(await read(target, 'vm-a', 'd2'), day2);
  // The copy keeps when the backup was taken, and its chunks are named under the target's key.
  assert.equal((await target.readManifest('vm-a', 'd1')).createdAt, first.createdAt);
  const sourceNames = new Set(await chunkFiles(source));
  assert.ok((await chunkFiles(target)).every((name) => !sourceNames.has(name)));
  assert.equal((await syncDatastore(source, target, { encryptedOnly: true })).copied.length, 0);
});

test('an encrypted-only copy refuses a plain target; a copy a killed sync began is redone, not trusted', async () => {
  const source = await Datastore.create(fresh());
  const plain = await Datastore.create(fresh());
  await backUp(source, randomBytes(3 * CHUNK), 'vm-b', 'd1');
  await rejectsWith(
    syncDatastore(source, plain, { encryptedOnly: true }),
    'invalid_request',
    /not encrypted/,
  );
  // What a sync killed before its manifest leaves: a directory with an index and no manifest.
  await fs.mkdir(path.join(plain.dir, 'backups/vm-b/d1'), { recursive: true });
  await fs.writeFile(path.join(plain.dir, 'backups/vm-b/d1/disk0.fidx'), 'cut off');
  const r = await syncDatastore(source, plain, { encryptedOnly: false, groups: ['vm-b'] });
  assert.deepEqual(r.copied, [{ group: 'vm-b', id: 'd1' }]);
  assert.deepEqual(await read(plain, 'vm-b', 'd1'), await read(source, 'vm-b', 'd1'));
  // Same key (none): chunk names match, so nothing is read twice on a second target.
  const again = await Datastore.create(fresh());
  await backUp(again, await read(source, 'vm-b', 'd1'), 'vm-x', 'd0');
  const same = await syncDatastore(source, again, { encryptedOnly: false });
  assert.equal(same.chunksRead, 0);
});
