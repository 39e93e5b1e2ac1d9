/**
 * Tern's NBD client against the real qemu-nbd, exporting a qcow2 with a persistent dirty bitmap:
 * block status reports exactly the extents written since the bitmap was enabled, reads return
 * the bytes QEMU itself reads, and a full then an incremental backup through the datastore
 * restore to the disk as it was at each point. No VM is booted: qemu-io writes as a guest would.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { changedChunks } from '../src/agent/backup/changed-chunks.ts';
import { NbdClient } from '../src/agent/backup/nbd/client.ts';
import { BASE_ALLOCATION, dirtyBitmapContext, STATE_HOLE } from '../src/agent/backup/nbd/protocol.ts';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import { FixedIndex } from '../src/backup/datastore/fixed-index.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-backup-nbd-'));
const servers: number[] = [];
after(() => {
  for (const pid of servers)
    try {
      process.kill(pid);
    } catch {}
  fs.rmSync(dir, { recursive: true, force: true });
});

const K = 1024;
const M = 1024 * K;
const SIZE = 64 * M;
const CHUNK = 256 * K;
const BITMAP = dirtyBitmapContext('tern');
const disk = path.join(dir, 'disk.qcow2');
const run = (cmd: string, ...args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' });
const write = (...ops: string[]) => run('qemu-io', '-f', 'qcow2', ...ops.flatMap((op) => ['-c', op]), disk);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** The disk's bytes as QEMU reads them. */
function rawImage(): Buffer {
  const raw = path.join(dir, 'raw.img');
  run('qemu-img', 'convert', '-U', '-f', 'qcow2', '-O', 'raw', disk, raw);
  return fs.readFileSync(raw);
}

/** qemu-nbd exporting the disk read-only (with the bitmap once there is one): its socket, and its end. */
function exportDisk(name: string, bitmap?: string): { sock: string; stop: () => Promise<void> } {
  const sock = path.join(dir, `${name}.sock`);
  const pidFile = path.join(dir, `${name}.pid`);
  const withBitmap = bitmap ? ['-B', bitmap] : [];
  run(
    'qemu-nbd',
    '--fork',
    '--persistent',
    `--pid-file=${pidFile}`,
    '-k',
    sock,
    '-r',
    '-f',
    'qcow2',
    '-x',
    'vda',
    ...withBitmap,
    disk,
  );
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  servers.push(pid);
  // Ended and gone, so the image's lock is free for the next qemu-img.
  const stop = async () => {
    process.kill(pid);
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        return;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.fail(`qemu-nbd ${pid} did not end`);
  };
  return { sock, stop };
}

async function backUp(ds: Datastore, nbd: NbdClient, id: string, previous?: FixedIndex) {
  const index = new FixedIndex(nbd.size, CHUNK, previous);
  const todo = previous
    ? changedChunks(await nbd.extents(BITMAP, 0, nbd.size), CHUNK)
    : Array.from({ length: index.count }, (_, i) => i);
  let read = 0;
  for (const i of todo) {
    const { offset, length } = index.range(i);
    index.setDigest(i, (await ds.chunks.insert(await nbd.read(offset, length))).digest);
    read += length;
  }
  await ds.commitBackup('vm-1', id, [{ name: 'vda', index }]);
  return { index, read };
}

async function restore(ds: Datastore, id: string): Promise<Buffer> {
  const index = await ds.readIndex(await ds.readManifest('vm-1', id), 'vda');
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) parts.push(await ds.readChunk(index, i));
  return Buffer.concat(parts);
}

test('block status reports exactly the dirty extents; reads return what QEMU reads; backups restore', async () => {
  run('qemu-img', 'create', '-q', '-f', 'qcow2', disk, String(SIZE));
  write('write -P 0x11 0 1M', 'write -P 0x22 32M 2M');
  const before = rawImage();
  const ds = await Datastore.create(path.join(dir, 'ds'), { key: Buffer.alloc(32, 9) });

  // A full backup before the bitmap exists (what the first backup of a VM is).
  const first = exportDisk('full');
  let nbd = await NbdClient.connect({ path: first.sock }, { exportName: 'vda' });
  const full = await backUp(ds, nbd, 'full');
  await nbd.disconnect();
  await first.stop();
  assert.equal(full.read, SIZE);

  run('qemu-img', 'bitmap', '--add', '--enable', '-g', '65536', disk, 'tern');
  write('write -P 0xaa 4M 4k', 'write -P 0xbb 10M 192k', 'write -P 0xcc 63M 1M', 'write -P 0xdd 32M 64k');
  const after2 = rawImage();

  const second = exportDisk('incr', 'tern');
  nbd = await NbdClient.connect(
    { path: second.sock },
    { exportName: 'vda', metaContexts: [BASE_ALLOCATION, BITMAP] },
  );
  assert.equal(nbd.size, SIZE);
  const dirty = (await nbd.extents(BITMAP, 0, SIZE)).filter((e) => e.flags & 1);
  assert.deepEqual(
    dirty.map((e) => [e.offset, e.length]),
    [
      [4 * M, 64 * K], // a 4 KiB write dirties one 64 KiB granule
      [10 * M, 192 * K],
      [32 * M, 64 * K],
      [63 * M, 1 * M],
    ],
  );
  // Allocation: 20 MiB was never written, so it is a hole and reads as zeroes (hole chunks).
  const allocation = await nbd.extents(BASE_ALLOCATION, 20 * M, M);
  assert.ok(
    allocation.every((e) => e.flags & STATE_HOLE),
    JSON.stringify(allocation),
  );
  assert.deepEqual(await nbd.read(20 * M, M), Buffer.alloc(M));
  for (const e of dirty)
    assert.deepEqual(await nbd.read(e.offset, e.length), after2.subarray(e.offset, e.offset + e.length));
  const whole = await nbd.read(0, SIZE);
  assert.equal(sha(whole), sha(after2));

  const incr = await backUp(ds, nbd, 'incr', full.index);
  await nbd.disconnect();
  await second.stop();
  // 4 dirty extents in 256 KiB chunks: 4M, 10M (192 KiB inside one chunk), 32M, and 63M's four.
  assert.equal(incr.read, 7 * CHUNK);
  assert.equal(sha(await restore(ds, 'full')), sha(before));
  assert.equal(sha(await restore(ds, 'incr')), sha(after2));
});
