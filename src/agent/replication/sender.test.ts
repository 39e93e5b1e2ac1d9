import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import type { TernError } from '../../errors.ts';
import type { ReceiveResult, ReplicateVmReport, ReplicateVmRequest } from '../../wire/replication.ts';
import type { Extent } from '../backup/nbd/block-status.ts';
import { STATE_DIRTY, STATE_HOLE, STATE_ZERO } from '../backup/nbd/protocol.ts';
import type { DiskView, VmView } from '../backup/view.ts';
import { decodeFrames } from './frames.ts';
import type { ReplicaLink } from './replica-link.ts';
import { sendReplica } from './sender.ts';

const K = 64 * 1024;
const SIZE = 64 * K; // 4 MiB

function random(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** A disk in memory: granules written hold random bytes; `dirty` are the granules the bitmap marked. */
function memoryDisk(bytes: Buffer, dirty: Set<number>, distrust: string | null = null): DiskView {
  const granules = bytes.length / K;
  const extents = (flags: (g: number) => number): Extent[] =>
    Array.from({ length: granules }, (_, g) => ({ offset: g * K, length: K, flags: flags(g) }));
  const zero = (g: number) => bytes.subarray(g * K, (g + 1) * K).every((b) => b === 0);
  return {
    name: 'disk0',
    size: bytes.length,
    format: 'qcow2',
    bitmapDistrust: distrust,
    allocation: async () => extents((g) => (zero(g) ? STATE_HOLE | STATE_ZERO : 0)),
    dirty: async () => extents((g) => (dirty.has(g) ? STATE_DIRTY : 0)),
    read: async (offset, length) => Buffer.from(bytes.subarray(offset, offset + length)),
  };
}

/** The replica's host in memory: applies the stream onto `replica` once its trailer checks out. */
function memoryReplica(replica: Buffer, seen: { dataFrames: number; streamBytes: number }): ReplicaLink {
  return async (_target, body) => {
    const writes: (() => void)[] = [];
    let point = '';
    let takenAt = '';
    for await (const f of decodeFrames(body)) {
      if (f.type === 'header') ({ point, takenAt } = f.header);
      else if (f.type === 'data') {
        seen.dataFrames++;
        writes.push(() => f.data.copy(replica, f.offset));
      } else if (f.type === 'zeroes') writes.push(() => replica.fill(0, f.offset, f.offset + f.length));
      else if (f.type === 'trailer') {
        for (const w of writes) w();
        seen.streamBytes = f.streamBytes;
        const r: ReceiveResult = {
          point,
          takenAt,
          consistency: f.trailer.consistency,
          writtenBytes: f.trailer.dataBytes,
          streamBytes: f.streamBytes,
          sha256: f.sha256,
        };
        return r;
      }
    }
    throw new Error('no trailer');
  };
}

function request(previous: string | null, point: string, resume: { disk: string; offset: number }[] = []) {
  return {
    replication: '0b4a1c9e-7f1d-4a5e-9a51-2f0e3c6d8b11',
    point,
    previous,
    bitmap: 'tern-rp-0b4a1c9e',
    disks: [{ name: 'disk0', volume: { pool: 'local', path: 'vm/disk0.qcow2' }, format: 'qcow2' }],
    freeze: false,
    bandwidth: 0,
    target: {
      url: 'https://127.0.0.1:1/agent/v1/replicas/x/receive',
      ticket: 'a'.repeat(43),
      ca: null,
      resume,
    },
  } satisfies ReplicateVmRequest;
}

const vmView = (disk: DiskView): VmView => ({
  takenAt: new Date().toISOString(),
  consistency: 'crash',
  consistencyNote: 'no freeze asked',
  disks: [disk],
});
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const P1 = '2026-12-07T18-00-00Z';
const P2 = '2026-12-07T18-00-30Z';

describe('sendReplica', () => {
  it('an initial point holds the disk whole; the next sends only the granules its bitmap marked', async () => {
    const disk = Buffer.alloc(SIZE);
    random(10 * K, 1).copy(disk, 0); // data in granules 0..9, the rest a hole
    random(K, 2).copy(disk, 40 * K);
    const replica = Buffer.alloc(SIZE, 0xee); // what was there before must not survive
    const seen = { dataFrames: 0, streamBytes: 0 };
    const lines: ReplicateVmReport[] = [];
    const first = await sendReplica(
      vmView(memoryDisk(disk, new Set())),
      request(null, P1),
      memoryReplica(replica, seen),
      (l) => lines.push(l),
      new AbortController().signal,
    );
    assert.equal(sha(replica), sha(disk));
    assert.equal(first.disks[0]!.mode, 'full');
    assert.equal(first.disks[0]!.fullReason, null);
    assert.equal(first.disks[0]!.readBytes, 11 * K, 'only what may hold data is read');
    assert.equal(first.disks[0]!.dirtyBytes, 11 * K);
    assert.match(first.sha256, /^[0-9a-f]{64}$/);
    assert.ok(lines.some((l) => l.type === 'progress' && l.item === 'disk0'));

    // The guest writes 4 KiB into granules 3 and 50: two granules go, nothing else.
    random(4096, 3).copy(disk, 3 * K + 100);
    random(4096, 4).copy(disk, 50 * K);
    const second = await sendReplica(
      vmView(memoryDisk(disk, new Set([3, 50]))),
      request(P1, P2),
      memoryReplica(replica, seen),
      () => {},
      new AbortController().signal,
    );
    assert.equal(sha(replica), sha(disk));
    assert.equal(second.disks[0]!.mode, 'incremental');
    assert.equal(second.disks[0]!.readBytes, 2 * K);
    assert.ok(second.disks[0]!.sentBytes < 3 * K, `sent ${second.disks[0]!.sentBytes} bytes`);
    assert.notEqual(second.sha256, first.sha256);
  });

  it('a bitmap that cannot be trusted sends the disk whole, saying why, and zeroes what reads as zeroes', async () => {
    const disk = Buffer.alloc(SIZE);
    random(2 * K, 5).copy(disk, 7 * K);
    const replica = random(SIZE, 9); // an older point's content everywhere
    const lines: ReplicateVmReport[] = [];
    const r = await sendReplica(
      vmView(memoryDisk(disk, new Set([7]), 'the dirty bitmap tern-rp-0b4a1c9e-x is inconsistent')),
      request(P1, P2),
      memoryReplica(replica, { dataFrames: 0, streamBytes: 0 }),
      (l) => lines.push(l),
      new AbortController().signal,
    );
    assert.equal(sha(replica), sha(disk));
    assert.equal(r.disks[0]!.mode, 'full');
    assert.match(r.disks[0]!.fullReason ?? '', /inconsistent/);
    assert.ok(lines.some((l) => l.type === 'log' && /disk0: sent whole: .*inconsistent/.test(l.message)));
  });

  it('a resumed initial copy sends nothing below the resume offset', async () => {
    const disk = random(SIZE, 6);
    const replica = Buffer.alloc(SIZE);
    disk.copy(replica, 0, 0, 32 * K); // what arrived before the break
    const r = await sendReplica(
      vmView(memoryDisk(disk, new Set())),
      request(null, P1, [{ disk: 'disk0', offset: 32 * K }]),
      memoryReplica(replica, { dataFrames: 0, streamBytes: 0 }),
      () => {},
      new AbortController().signal,
    );
    assert.equal(sha(replica), sha(disk));
    assert.equal(r.disks[0]!.readBytes, 32 * K);
  });

  it("a replica's answer with another digest fails the cycle", async () => {
    const disk = random(SIZE, 7);
    const honest = memoryReplica(Buffer.alloc(SIZE), { dataFrames: 0, streamBytes: 0 });
    const liar: ReplicaLink = async (t, body, s) => ({
      ...(await honest(t, body, s)),
      sha256: 'f'.repeat(64),
    });
    await assert.rejects(
      sendReplica(
        vmView(memoryDisk(disk, new Set())),
        request(null, P1),
        liar,
        () => {},
        new AbortController().signal,
      ),
      (err: TernError) => err.code === 'protocol_error' && /digest/.test(err.message),
    );
  });

  it('a cancelled cycle stops mid-stream: the replica sees a stream without its trailer', async () => {
    const disk = random(SIZE, 8);
    const abort = new AbortController();
    let frames = 0;
    const link: ReplicaLink = async (_t, body) => {
      for await (const _ of body) if (++frames === 3) abort.abort();
      throw new Error('unreachable: the body ended');
    };
    await assert.rejects(
      sendReplica(vmView(memoryDisk(disk, new Set())), request(null, P1), link, () => {}, abort.signal),
      (err: TernError) => err.code === 'cancelled',
    );
    assert.equal(frames, 3, 'nothing was made after the cancel');
  });

  it('the bandwidth paces the bytes sent over the whole cycle', async () => {
    const disk = randomBytes(SIZE); // incompressible
    const started = Date.now();
    const r = await sendReplica(
      vmView(memoryDisk(disk, new Set())),
      { ...request(null, P1), bandwidth: 8 * 1024 * 1024 },
      memoryReplica(Buffer.alloc(SIZE), { dataFrames: 0, streamBytes: 0 }),
      () => {},
      new AbortController().signal,
    );
    // What was sent, at 8 MiB/s: never sooner than that allows.
    const sent = r.disks[0]!.sentBytes;
    assert.ok(sent >= 2 * 1024 * 1024, `sent ${sent} bytes`);
    const least = (sent / (8 * 1024 * 1024)) * 1000;
    assert.ok(Date.now() - started >= least * 0.9, `took ${Date.now() - started} ms for ${sent} bytes`);
  });
});
