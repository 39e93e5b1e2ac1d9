import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Datastore } from '../../../backup/datastore/datastore.ts';
import { BackupDiskReader } from '../../../backup/datastore/disk-reader.ts';
import { FixedIndex } from '../../../backup/datastore/fixed-index.ts';
import { rejectsWith } from '../../../testing.ts';
import { NbdClient } from './client.ts';
import { BASE_ALLOCATION, STATE_ZERO } from './protocol.ts';
import { NbdServer } from './server.ts';

const run = promisify(execFile);
const CHUNK = 64 * 1024;
const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-nbd-server-'));
const socket = path.join(root, 'nbd.sock');
// Data, a run of zero chunks, data again, and a short last chunk.
const disk = Buffer.concat([randomBytes(3 * CHUNK), Buffer.alloc(5 * CHUNK), randomBytes(CHUNK + 4096)]);
let store: Datastore;
let index: FixedIndex;
let server: NbdServer;

before(async () => {
  store = await Datastore.create(path.join(root, 'ds'), { key: randomBytes(32) });
  const made = new FixedIndex(disk.length, CHUNK);
  for (let i = 0; i < made.count; i++) {
    const { offset, length } = made.range(i);
    made.setDigest(i, (await store.chunks.insert(disk.subarray(offset, offset + length))).digest);
  }
  const manifest = await store.commitBackup('vm-1', 'b1', [{ name: 'disk0', index: made }]);
  index = await store.readIndex(manifest, 'disk0');
  server = await NbdServer.listen(socket, new Map([['disk0', new BackupDiskReader(store, index)]]));
});
after(async () => {
  await server.close();
  await fs.rm(root, { recursive: true, force: true });
});

test('a backup disk served over NBD reads back byte for byte, its zero chunks reported as holes', async () => {
  const nbd = await NbdClient.connect(
    { path: socket },
    { exportName: 'disk0', metaContexts: [BASE_ALLOCATION] },
  );
  try {
    assert.equal(nbd.size, disk.length);
    assert.deepEqual(await nbd.read(0, disk.length), disk);
    assert.deepEqual(await nbd.read(CHUNK - 100, 300), disk.subarray(CHUNK - 100, CHUNK + 200));
    const extents = await nbd.extents(BASE_ALLOCATION, 0, disk.length);
    assert.deepEqual(
      extents.map((e) => [e.offset, e.length, (e.flags & STATE_ZERO) !== 0]),
      [
        [0, 3 * CHUNK, false],
        [3 * CHUNK, 5 * CHUNK, true],
        [8 * CHUNK, CHUNK + 4096, false],
      ],
    );
    await rejectsWith(nbd.read(disk.length - 4096, 8192), 'invalid_request', /past the end/);
  } finally {
    await nbd.disconnect();
  }
});

test('QEMU reads the export: qemu-img copies it to the same bytes', async () => {
  const out = path.join(root, 'copy.raw');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `nbd+unix:///disk0?socket=${socket}`, out]);
  assert.deepEqual(await fs.readFile(out), disk);
  const { stdout } = await run('qemu-img', ['info', '--output=json', `nbd+unix:///disk0?socket=${socket}`]);
  assert.equal(JSON.parse(stdout)['virtual-size'], disk.length);
});

test('an unknown export is refused, and a client speaking nonsense is dropped while others go on', async () => {
  await rejectsWith(NbdClient.connect({ path: socket }, { exportName: 'disk9' }), 'not_found');
  const junk = net.connect(socket);
  await new Promise<void>((resolve) => junk.once('connect', resolve));
  const closed = new Promise<void>((resolve) => junk.once('close', () => resolve()));
  junk.on('error', () => {});
  junk.resume();
  junk.write(Buffer.concat([Buffer.alloc(4), Buffer.from('this is not an option header at all')]));
  await closed;
  const nbd = await NbdClient.connect({ path: socket }, { exportName: 'disk0' });
  assert.deepEqual(await nbd.read(0, 4096), disk.subarray(0, 4096));
  await nbd.disconnect();
});

test('a damaged chunk is an I/O error for the reads that need it, not for the others', async () => {
  const victim = index.digest(1);
  const file = store.chunks.pathOf(victim);
  const original = await fs.readFile(file);
  const damaged = Buffer.from(original);
  damaged[damaged.length - 1]! ^= 0xff;
  await fs.writeFile(file, damaged);
  // A server of its own: the first one may hold the good chunk in its cache.
  const fresh = await NbdServer.listen(
    path.join(root, 'b.sock'),
    new Map([['disk0', new BackupDiskReader(store, index)]]),
  );
  const nbd = await NbdClient.connect({ path: fresh.path }, { exportName: 'disk0' });
  try {
    await rejectsWith(nbd.read(CHUNK, 4096), 'storage_error', /EIO/);
    assert.deepEqual(await nbd.read(0, 4096), disk.subarray(0, 4096));
  } finally {
    await nbd.disconnect();
    await fresh.close();
    await fs.writeFile(file, original);
  }
});
