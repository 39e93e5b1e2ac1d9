import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { TernError } from '../../errors.ts';
import { decodeFrames, type Frame, FrameEncoder, MAX_FRAME_BYTES, type StreamHeader } from './frames.ts';

const header: StreamHeader = {
  replication: '0b4a1c9e-7f1d-4a5e-9a51-2f0e3c6d8b11',
  point: '2026-12-07T18-00-00Z',
  base: null,
  takenAt: '2026-12-07T18:00:00.000Z',
  disks: [
    { name: 'disk0', sizeBytes: 1024 * 1024 },
    { name: 'disk1', sizeBytes: 64 * 1024 },
  ],
};

function pattern(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function random(length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = 12345;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** The parts of one stream, so tests can drop, swap or damage them. */
function parts(): Buffer[] {
  const e = new FrameEncoder(header);
  return [
    e.start(),
    e.data(0, 0, pattern(8192, 1)), // compresses: zstd
    e.zeroes(0, 65536, 4096),
    e.data(0, 131072, random(4096)), // does not: raw
    e.endDisk(0),
    e.data(1, 4096, pattern(4096, 7)),
    e.endDisk(1),
    e.trailer({ consistency: 'application', consistencyNote: null }),
  ];
}

async function* chunks(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function decodeAll(bytes: Buffer, chunkSize = 1000): Promise<Frame[]> {
  const out: Frame[] = [];
  for await (const f of decodeFrames(chunks(bytes, chunkSize))) out.push(f);
  return out;
}

async function refused(bytes: Buffer, reason: RegExp): Promise<void> {
  await assert.rejects(decodeAll(bytes), (err: unknown) => {
    assert.ok(err instanceof TernError, String(err));
    assert.equal(err.code, 'invalid_request');
    assert.match(err.message, reason);
    return true;
  });
}

describe('replication frames', () => {
  it('round trip: what was encoded is decoded, chunked any way, with the same chained digest', async () => {
    const e = new FrameEncoder(header);
    const bytes = Buffer.concat([
      e.start(),
      e.data(0, 0, pattern(8192, 1)),
      e.zeroes(0, 65536, 4096),
      e.data(0, 131072, random(4096)),
      e.endDisk(0),
      e.data(1, 4096, pattern(4096, 7)),
      e.endDisk(1),
      e.trailer({ consistency: 'application', consistencyNote: 'frozen' }),
    ]);
    assert.equal(e.streamBytes, bytes.length);
    assert.ok(bytes.length < 8192 + 4096 + 4096, 'the patterns went compressed');
    for (const size of [1, 7, 52, 4096, bytes.length]) {
      const frames = await decodeAll(bytes, size);
      assert.deepEqual(
        frames.map((f) => f.type),
        ['header', 'data', 'zeroes', 'data', 'end', 'data', 'end', 'trailer'],
      );
      assert.deepEqual(frames[0], { type: 'header', header });
      assert.deepEqual(frames[1], { type: 'data', disk: 0, offset: 0, data: pattern(8192, 1) });
      assert.deepEqual(frames[2], { type: 'zeroes', disk: 0, offset: 65536, length: 4096 });
      assert.deepEqual(frames[3], { type: 'data', disk: 0, offset: 131072, data: random(4096) });
      assert.deepEqual(frames[5], { type: 'data', disk: 1, offset: 4096, data: pattern(4096, 7) });
      assert.deepEqual(frames[7], {
        type: 'trailer',
        trailer: { consistency: 'application', consistencyNote: 'frozen', frames: 6, dataBytes: 16384 },
        sha256: e.sha256,
        streamBytes: bytes.length,
      });
    }
  });

  it('splits data and zeroes past 16 MiB into several frames', async () => {
    const big: StreamHeader = { ...header, disks: [{ name: 'disk0', sizeBytes: 64 * 1024 * 1024 }] };
    const e = new FrameEncoder(big);
    const data = pattern(MAX_FRAME_BYTES + 4096, 3);
    const bytes = Buffer.concat([
      e.start(),
      e.data(0, 0, data),
      e.zeroes(0, 32 * 1024 * 1024, 2 * MAX_FRAME_BYTES),
      e.endDisk(0),
      e.trailer({ consistency: 'crash', consistencyNote: null }),
    ]);
    const frames = await decodeAll(bytes, 1 << 20);
    assert.deepEqual(
      frames.map((f) => f.type),
      ['header', 'data', 'data', 'zeroes', 'zeroes', 'end', 'trailer'],
    );
    const d = frames.filter((f) => f.type === 'data').map((f) => f.data);
    assert.ok(Buffer.concat(d).equals(data));
  });

  it('refuses a bad magic', async () => {
    const bytes = Buffer.concat(parts());
    bytes.write('TERNXX01', 0, 'latin1');
    await refused(bytes, /does not start with TERNRP01/);
  });

  it('refuses a frame out of its disk bounds', async () => {
    const e = new FrameEncoder({
      ...header,
      disks: [{ name: 'disk0', sizeBytes: 2 * 1024 * 1024 }, header.disks[1]!],
    });
    const p = [e.start(), e.data(0, 1024 * 1024 + 4096, pattern(4096, 2))];
    // The same stream, its header saying disk0 is 1 MiB.
    p[0] = new FrameEncoder(header).start();
    await refused(Buffer.concat(p), /beyond the end of disk0/);
    const p2 = parts();
    p2[5]!.writeUInt8(9, 1); // disk index 9
    await refused(Buffer.concat(p2), /disk index 9/);
  });

  it('refuses a length over 16 MiB before reading it', async () => {
    const p = parts();
    p[3]!.writeUInt32BE(MAX_FRAME_BYTES + 1, 12);
    p[3]!.writeUInt32BE(MAX_FRAME_BYTES + 1, 16);
    // Only the header and the frame's own header arrive: the refusal cannot be waiting for the payload.
    await refused(Buffer.concat([p[0]!, p[1]!, p[2]!, p[3]!.subarray(0, 52)]), /payload of 16777217 bytes/);
    const q = parts();
    q[2]!.writeUInt32BE(MAX_FRAME_BYTES + 1, 12); // zeroes
    await refused(Buffer.concat(q), /of 16777217 bytes/);
  });

  it('refuses data that does not match its digest', async () => {
    const p = parts();
    const raw = p[3]!;
    raw[52 + 100] = raw[52 + 100]! ^ 1;
    await refused(Buffer.concat(p), /does not match its SHA-256/);
  });

  it('refuses a zstd payload that does not decompress', async () => {
    const p = parts();
    p[1]!.writeUInt32BE(0xdeadbeef, 52); // the zstd magic
    await refused(Buffer.concat(p), /does not decompress/);
  });

  it('refuses a stream cut anywhere', async () => {
    const bytes = Buffer.concat(parts());
    for (let n = 0; n < bytes.length; n += n < 200 ? 1 : 37)
      await refused(bytes.subarray(0, n), /ends (inside|at byte|before)/);
    await refused(Buffer.concat([bytes, Buffer.from([0])]), /bytes follow its trailer/);
  });

  it('refuses a trailer whose counts differ', async () => {
    const p = parts();
    const t = p[7]!;
    const json = JSON.parse(t.subarray(52).toString());
    const changed = Buffer.from(JSON.stringify({ ...json, dataBytes: json.dataBytes + 1 }));
    const h = Buffer.from(t.subarray(0, 52));
    h.writeUInt32BE(changed.length, 12);
    h.writeUInt32BE(changed.length, 16);
    p[7] = Buffer.concat([h, changed]);
    await refused(Buffer.concat(p), /counts 6 frames and 16385 data bytes, 6 and 16384 arrived/);
    const q = parts();
    q[7]![30] = q[7]![30]! ^ 1; // the chained digest itself
    await refused(Buffer.concat(q), /chained digest differs/);
  });

  it('refuses a stream with a frame dropped', async () => {
    const p = parts();
    p.splice(2, 1); // the zeroes frame: everything else is still in order
    await refused(Buffer.concat(p), /chained digest differs/);
  });

  it('refuses frames out of order, a frame after its disk ended, and a disk that never ends', async () => {
    const p = parts();
    [p[1], p[3]] = [p[3]!, p[1]!];
    await refused(Buffer.concat(p), /before the end of the previous one/);
    const q = parts();
    [q[4], q[5]] = [q[5]!, q[4]!]; // disk1's data before disk0's end: allowed by order, caught by the chain
    await refused(Buffer.concat(q), /chained digest differs/);
    const r = parts();
    [r[3], r[4]] = [r[4]!, r[3]!];
    await refused(Buffer.concat(r), /a frame of disk0 after its end/);
    const e = new FrameEncoder(header);
    const s = [e.start(), e.endDisk(0)];
    assert.throws(() => e.trailer({ consistency: 'crash', consistencyNote: null }), /before disk1 ended/);
    assert.throws(() => e.data(0, 0, Buffer.alloc(1)), /after its end/);
    assert.ok(s[1]!.length === 52);
  });

  it('refuses a header out of shape', async () => {
    const json = Buffer.from(JSON.stringify({ ...header, disks: [] }));
    const b = Buffer.alloc(12);
    b.write('TERNRP01', 0, 'latin1');
    b.writeUInt32BE(json.length, 8);
    await refused(Buffer.concat([b, json]), /header is out of shape/);
    b.writeUInt32BE(1 << 30, 8);
    await refused(b, /a header of 1073741824 bytes/);
  });

  it('the chained digest covers every frame header', () => {
    const e = new FrameEncoder(header);
    const p = [e.start(), e.endDisk(0), e.endDisk(1)];
    e.trailer({ consistency: 'crash', consistencyNote: null });
    const expected = createHash('sha256').update(p[0]!).update(p[1]!).update(p[2]!).digest('hex');
    assert.equal(e.sha256, expected);
  });
});
