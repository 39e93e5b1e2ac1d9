/**
 * Replication through the sim driver is real bytes on the wire: the sim's pattern disks go
 * through the same sender as QEMU's, and the stream, decoded frame by frame, rebuilds the disk
 * exactly; an incremental sends only the granules written, and a cycle that failed keeps its
 * bitmaps, so the next one sends what both saw.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { ReplicateVmRequest } from '../../wire/replication.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { decodeFrames } from '../replication/frames.ts';
import type { ReplicaLink } from '../replication/replica-link.ts';
import { granulePattern, SIM_GRANULE } from './backup.ts';
import { SimDriver } from './driver.ts';

const K = 1024;
const M = 1024 * K;
const SIZE = 16 * M;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-sim-replicate-'));
const pool = path.join(dir, 'pool');
fs.mkdirSync(path.join(pool, 'vms/a'), { recursive: true });
const driver = new SimDriver({ hostname: 'h1', pools: { local: pool }, bootDelayMs: 10 });
after(async () => {
  await driver.close();
  fs.rmSync(dir, { recursive: true, force: true });
});
const volume = { pool: 'local', path: 'vms/a/disk0.qcow2' };
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
const rid = '0b4a1c9e-7f1d-4a5e-9a51-2f0e3c6d8b11';

function request(point: string, previous: string | null): ReplicateVmRequest {
  return {
    replication: rid,
    point,
    previous,
    bitmap: 'tern-rp-0b4a1c9e',
    disks: [{ name: 'disk0', volume, format: 'qcow2' }],
    freeze: true,
    bandwidth: 0,
    target: { url: 'https://127.0.0.1:1/x', ticket: 'a'.repeat(43), ca: null, resume: [] },
  };
}

/** The replica's disk in memory: a stream's writes applied once its trailer checked out. */
const replica = Buffer.alloc(SIZE);
const link: ReplicaLink = async (_t, body) => {
  const writes: (() => void)[] = [];
  for await (const f of decodeFrames(body)) {
    if (f.type === 'data') writes.push(() => f.data.copy(replica, f.offset));
    else if (f.type === 'zeroes') writes.push(() => replica.fill(0, f.offset, f.offset + f.length));
    else if (f.type === 'trailer') {
      for (const w of writes) w();
      return {
        point: '2026-12-07T18-00-00Z',
        takenAt: new Date().toISOString(),
        consistency: f.trailer.consistency,
        writtenBytes: f.trailer.dataBytes,
        streamBytes: f.streamBytes,
        sha256: f.sha256,
      };
    }
  }
  throw new Error('no trailer');
};

test('a sim VM replicates whole, then only the granules written, and after a failed cycle what both saw', async () => {
  await driver.run(spec);
  const writes = new Map<number, number>();
  const write = (offset: number, length: number) => {
    driver.writeDisk(spec.id, 0, offset, length);
    for (let g = Math.floor(offset / SIM_GRANULE); g <= Math.floor((offset + length - 1) / SIM_GRANULE); g++)
      writes.set(g, (writes.get(g) ?? 0) + 1);
  };
  const expected = () => {
    const out = Buffer.alloc(SIZE);
    for (const [g, n] of writes) granulePattern(spec.id, 'disk0', g, n).copy(out, g * SIM_GRANULE);
    return out;
  };
  const P1 = '2026-12-07T18-00-00Z';
  const P2 = '2026-12-07T18-00-30Z';
  const P3 = '2026-12-07T18-01-00Z';
  // Each point answers the point it was asked for.
  const as =
    (point: string): ReplicaLink =>
    async (t, b, s) => ({ ...(await link(t, b, s)), point });
  const signal = new AbortController().signal;

  write(0, M);
  const first = await driver.replicateVm(spec.id, request(P1, null), as(P1), () => {}, signal);
  assert.equal(first.disks[0]!.mode, 'full');
  assert.equal(first.disks[0]!.readBytes, M);
  assert.ok(replica.equals(expected()));

  write(4 * M, 4 * K);
  const broken: ReplicaLink = async () => {
    throw new Error('the replica host went away');
  };
  await assert.rejects(
    driver.replicateVm(spec.id, request(P2, P1), broken, () => {}, signal),
    /went away/,
  );

  write(8 * M, 4 * K);
  const third = await driver.replicateVm(spec.id, request(P3, P1), as(P3), () => {}, signal);
  assert.equal(third.disks[0]!.mode, 'incremental');
  assert.equal(third.disks[0]!.dirtyBytes, 2 * SIM_GRANULE);
  assert.ok(replica.equals(expected()));
  assert.deepEqual(driver.dirtyBitmaps(volume, 'tern-rp-0b4a1c9e'), ['tern-rp-0b4a1c9e-' + P3]);
});
