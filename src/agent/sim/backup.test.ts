/**
 * Backups through the sim driver are real: chunk files, indexes and a manifest, the disk's
 * simulated contents read back byte for byte, incrementals reading only what the guest wrote,
 * and a crash making the next backup read everything and say why.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { rejectsWith } from '../../testing.ts';
import type { BackupVmReport, BackupVmRequest } from '../../wire/backup.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { granulePattern, SIM_GRANULE } from './backup.ts';
import { SimDriver } from './driver.ts';

const K = 1024;
const M = 1024 * K;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-sim-backup-'));
const pool = path.join(dir, 'pool');
fs.mkdirSync(pool);
const driver = new SimDriver({ hostname: 'h1', pools: { local: pool }, bootDelayMs: 10 });
after(async () => {
  await driver.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const SIZE = 16 * M;
const CHUNK = 256 * K;
const volume = { pool: 'local', path: 'vms/a/disk0.qcow2' };
fs.mkdirSync(path.join(pool, 'vms/a'), { recursive: true });
execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(pool, volume.path), String(SIZE)]);

const spec: VmSpec = {
  id: randomUUID(),
  name: 'a',
  machine: 'q35',
  cpuModel: 'host',
  vcpus: 1,
  memoryMiB: 256,
  disks: [{ volume, format: 'qcow2', readonly: false }],
  nics: [],
};
const prefix = 'tern-bk-1a2b3c4d';

function request(id: string, previous: string | null): BackupVmRequest {
  return {
    datastore: { path: path.join(dir, 'ds'), key: null },
    chunkSize: CHUNK,
    group: spec.id,
    id,
    previous,
    bitmap: prefix,
    disks: [{ name: 'disk0', volume, format: 'qcow2' }],
    freeze: true,
    bandwidth: 0,
    labels: { name: 'a' },
  };
}

async function backUp(id: string, previous: string | null) {
  const lines: BackupVmReport[] = [];
  const result = await driver.backupVm(
    spec.id,
    request(id, previous),
    (l) => lines.push(l),
    new AbortController().signal,
  );
  return { result, disk: result.disks[0], logs: lines.filter((l) => l.type === 'log').map((l) => l.message) };
}

/** What the disk held: each granule's pattern after its last write, zeros where never written. */
function expected(writes: Map<number, number>): Buffer {
  const out = Buffer.alloc(SIZE);
  for (const [g, n] of writes) granulePattern(spec.id, 'disk0', g, n).copy(out, g * SIM_GRANULE);
  return out;
}

async function restore(id: string): Promise<Buffer> {
  const ds = await Datastore.open(path.join(dir, 'ds'));
  const index = await ds.readIndex(await ds.readManifest(spec.id, id), 'disk0');
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) parts.push(await ds.readChunk(index, i));
  return Buffer.concat(parts);
}

test('full, incremental across a stop, and full after a crash, each restoring what the disk held', async () => {
  await Datastore.create(path.join(dir, 'ds'));
  await driver.run(spec);
  const writes = new Map<number, number>();
  const write = (offset: number, length: number) => {
    driver.writeDisk(spec.id, 0, offset, length);
    for (let g = Math.floor(offset / SIM_GRANULE); g <= Math.floor((offset + length - 1) / SIM_GRANULE); g++)
      writes.set(g, (writes.get(g) ?? 0) + 1);
  };
  write(0, M);
  write(8 * M, 4 * K);

  const first = await backUp('b1', null);
  assert.equal(first.disk.mode, 'full');
  assert.equal(first.disk.fullReason, null);
  // Only the chunks holding data are read: 1 MiB and one 256 KiB chunk; the rest are zeros.
  assert.equal(first.disk.readBytes, M + CHUNK);
  assert.equal(first.disk.chunks, SIZE / CHUNK);
  assert.equal(first.result.consistency, 'crash'); // the guest agent is not up yet
  assert.deepEqual(await restore('b1'), expected(writes));
  const atB1 = expected(writes);

  write(4 * M + 100, 10);
  write(8 * M, 4 * K);
  await driver.act(spec.id, 'kill'); // a stop: the bitmap is kept
  const second = await backUp('b2', 'b1');
  assert.equal(second.disk.mode, 'incremental');
  assert.equal(second.disk.readBytes, 2 * CHUNK);
  assert.equal(second.disk.dirtyBytes, 2 * SIM_GRANULE);
  assert.equal(second.result.consistencyNote, 'stopped VM: consistent');
  assert.deepEqual(await restore('b2'), expected(writes));
  assert.deepEqual(await restore('b1'), atB1);
  assert.deepEqual(driver.dirtyBitmaps(volume, prefix), [`${prefix}-b2`]);

  await driver.run(spec);
  write(12 * M, 64 * K);
  driver.crash(spec.id);
  const third = await backUp('b3', 'b2');
  assert.equal(third.disk.mode, 'full');
  assert.match(third.disk.fullReason!, /tern-bk-1a2b3c4d-b2 is inconsistent/);
  assert.ok(third.logs.some((l) => /disk0: read whole: .*inconsistent/.test(l)));
  // Read whole, but only the chunk that changed is new to the datastore.
  assert.equal(third.disk.newChunks, 1);
  assert.deepEqual(await restore('b3'), expected(writes));

  // Bad requests are refused before any bitmap is touched: two disks under one name, a volume
  // that is not there.
  const twice = request('bx', 'b3');
  await rejectsWith(
    driver.backupVm(
      spec.id,
      { ...twice, disks: [twice.disks[0], { ...twice.disks[0], volume: { pool: 'local', path: 'other' } }] },
      () => {},
      new AbortController().signal,
    ),
    'invalid_request',
  );
  await rejectsWith(
    driver.backupVm(
      spec.id,
      { ...twice, disks: [{ ...twice.disks[0], volume: { pool: 'local', path: 'nope.qcow2' } }] },
      () => {},
      new AbortController().signal,
    ),
    'not_found',
  );
  // A backup the datastore has already is refused before any bitmap is touched.
  await rejectsWith(backUp('b3', 'b2'), 'conflict');
  assert.deepEqual(driver.dirtyBitmaps(volume, prefix), [`${prefix}-b3`]);

  // A backup that fails after its rotation keeps every bitmap; the next one merges them all.
  await driver.run(spec);
  write(0, 4 * K);
  await rejectsWith(
    driver.backupVm(
      spec.id,
      { ...request('b4', 'b3'), chunkSize: 3 },
      () => {},
      new AbortController().signal,
    ),
    'invalid_request',
  );
  assert.deepEqual(driver.dirtyBitmaps(volume, prefix).sort(), [`${prefix}-b3`, `${prefix}-b4`]);
  write(2 * M, 4 * K);
  const fifth = await backUp('b5', 'b3');
  assert.equal(fifth.disk.mode, 'incremental');
  assert.equal(fifth.disk.readBytes, 2 * CHUNK);
  assert.deepEqual(await restore('b5'), expected(writes));
  assert.deepEqual(driver.dirtyBitmaps(volume, prefix), [`${prefix}-b5`]);
});

test('consistency as the QEMU driver tells it: frozen when the guest agent answers, not while paused', async () => {
  await driver.run(spec);
  for (let i = 0; i < 200 && driver.get(spec.id)?.guest.agent !== 'responding'; i++)
    await new Promise((r) => setTimeout(r, 10));
  const frozen = await backUp('c1', null);
  assert.equal(frozen.result.consistency, 'application');
  assert.equal(frozen.result.consistencyNote, null);
  await driver.act(spec.id, 'pause');
  const paused = await backUp('c2', 'c1');
  assert.equal(paused.result.consistency, 'crash');
  assert.equal(paused.result.consistencyNote, 'the VM is paused: not frozen');
  assert.equal(paused.disk.mode, 'incremental');
  assert.equal(paused.disk.readBytes, 0);
});
