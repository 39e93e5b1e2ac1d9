import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Datastore } from './datastore.ts';
import { FixedIndex } from './fixed-index.ts';
import { verifyBackups } from './verify.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-verify-'));
after(() => fs.rm(root, { recursive: true, force: true }));
const CHUNK = 4096;

test('verify reads each chunk once, names a damaged or missing chunk, and sets a damaged one aside', async () => {
  const ds = await Datastore.create(path.join(root, 'ds'));
  const chunks = [randomBytes(CHUNK), randomBytes(CHUNK), randomBytes(CHUNK), Buffer.alloc(CHUNK)];
  const index = new FixedIndex(chunks.length * CHUNK, CHUNK);
  for (const [i, c] of chunks.entries()) index.setDigest(i, (await ds.chunks.insert(c)).digest);
  await ds.commitBackup('vm-1', 'one', [{ name: 'disk0', index }]);
  await ds.commitBackup('vm-1', 'two', [{ name: 'disk0', index }]);
  await ds.commitBackup('vm-2', 'one', [{ name: 'disk0', index: new FixedIndex(CHUNK, CHUNK, index) }]);

  const good = await verifyBackups(ds, [
    { group: 'vm-1', id: 'one' },
    { group: 'vm-1', id: 'two' },
  ]);
  assert.deepEqual(
    good.backups.map((b) => b.ok),
    [true, true],
  );
  assert.equal(good.chunksChecked, 4, 'a chunk named twice is read once');
  assert.equal(good.bytesChecked, 4 * CHUNK);

  // Flip a byte of chunk 1, remove chunk 2.
  const damaged = ds.chunks.pathOf(index.digest(1));
  const bytes = await fs.readFile(damaged);
  bytes[bytes.length - 1]! ^= 1;
  await fs.writeFile(damaged, bytes);
  await fs.rm(ds.chunks.pathOf(index.digest(2)));
  const bad = await verifyBackups(ds, [
    { group: 'vm-1', id: 'one' },
    { group: 'vm-2', id: 'one' },
    { group: 'vm-3', id: 'none' },
  ]);
  const [one, other, none] = bad.backups;
  assert.equal(one?.ok, false);
  assert.equal(one?.problems.length, 2);
  assert.match(one!.problems[0]!, new RegExp(`disk disk0 chunk 1 \\(${index.digest(1)}\\): .*damaged`));
  assert.match(one!.problems[1]!, new RegExp(`chunk 2 \\(${index.digest(2)}\\).*missing`));
  assert.deepEqual(other, { group: 'vm-2', id: 'one', ok: true, problems: [] });
  assert.equal(none?.ok, false);
  assert.match(none!.problems[0]!, /manifest: .*not found/);
  // The damaged chunk was set aside: the next backup of that data writes it whole again.
  await assert.rejects(fs.access(damaged));
  await fs.access(`${damaged}.bad`);
  assert.equal((await ds.chunks.insert(chunks[1]!)).written, true);
  assert.deepEqual(await ds.readChunk(index, 1), chunks[1]);
});
