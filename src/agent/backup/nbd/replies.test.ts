import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeBlockStatus } from './block-status.ts';
import {
  decodeErrorChunk,
  encodeRequest,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_ERROR_OFFSET,
  serverText,
} from './protocol.ts';
import { ProtocolViolation, ReadAssembly, ServerError } from './read-reply.ts';

const data = (offset: number, bytes: Buffer) => {
  const p = Buffer.alloc(8 + bytes.length);
  p.writeBigUInt64BE(BigInt(offset));
  bytes.copy(p, 8);
  return p;
};
const hole = (offset: number, size: number) => {
  const p = Buffer.alloc(12);
  p.writeBigUInt64BE(BigInt(offset));
  p.writeUInt32BE(size, 8);
  return p;
};
const errorChunk = (errno: number, message: string, offset?: number) => {
  const m = Buffer.from(message);
  const p = Buffer.alloc(6 + m.length + (offset === undefined ? 0 : 8));
  p.writeUInt32BE(errno);
  p.writeUInt16BE(m.length, 4);
  m.copy(p, 6);
  if (offset !== undefined) p.writeBigUInt64BE(BigInt(offset), 6 + m.length);
  return p;
};
const status = (id: number, extents: [number, number][]) => {
  const p = Buffer.alloc(4 + 8 * extents.length);
  p.writeUInt32BE(id);
  extents.forEach(([len, flags], i) => {
    p.writeUInt32BE(len, 4 + 8 * i);
    p.writeUInt32BE(flags, 8 + 8 * i);
  });
  return p;
};

test('a request is the 28 bytes the protocol lays out', () => {
  const r = encodeRequest(7, 0, 0x0102030405060708n, 2 ** 40, 65536);
  assert.equal(r.toString('hex'), '2560951300000007010203040506070800000100000000000' + '0010000');
});

test('a read reply in any order of data and hole chunks is put back together', () => {
  const a = new ReadAssembly(1000, 300);
  a.accept(1, data(1200, Buffer.alloc(100, 3)));
  a.accept(2, hole(1100, 100));
  a.accept(1, data(1000, Buffer.alloc(100, 1)));
  const out = a.finish();
  assert.deepEqual(out, Buffer.concat([Buffer.alloc(100, 1), Buffer.alloc(100), Buffer.alloc(100, 3)]));
});

test('read chunks outside the request, overlapping, empty, or not covering it are violations', () => {
  const cases: [string, (a: ReadAssembly) => void][] = [
    ['before', (a) => a.accept(1, data(999, Buffer.alloc(10)))],
    ['after', (a) => a.accept(1, data(1295, Buffer.alloc(10)))],
    ['far past 2^53', (a) => a.accept(2, hole(0, 1).fill(0xff, 0, 8))],
    [
      'overlap',
      (a) => {
        a.accept(1, data(1000, Buffer.alloc(50)));
        a.accept(2, hole(1049, 10));
      },
    ],
    [
      'overlap inside',
      (a) => {
        a.accept(2, hole(1000, 300));
        a.accept(1, data(1100, Buffer.alloc(1)));
      },
    ],
    ['empty hole', (a) => a.accept(2, hole(1000, 0))],
    ['short data', (a) => a.accept(1, Buffer.alloc(8))],
    ['hole of 13 bytes', (a) => a.accept(2, Buffer.alloc(13))],
    ['block status', (a) => a.accept(5, status(1, [[300, 0]]))],
    [
      'not covered',
      (a) => {
        a.accept(1, data(1000, Buffer.alloc(100)));
        a.finish();
      },
    ],
    ['nothing', (a) => a.finish()],
    ['bad error chunk', (a) => a.accept(REPLY_TYPE_ERROR, Buffer.from([0, 0, 0, 5, 0, 200, 65]))],
  ];
  for (const [name, fn] of cases)
    assert.throws(() => fn(new ReadAssembly(1000, 300)), ProtocolViolation, name);
});

test("a server's error chunk fails the read with its errno and a clean message", () => {
  const a = new ReadAssembly(0, 4096);
  a.accept(REPLY_TYPE_ERROR_OFFSET, errorChunk(5, 'disk\u0007 gone\nbad', 512));
  assert.throws(
    () => a.finish(),
    (e: unknown) =>
      e instanceof ServerError && e.errno === 5 && e.message === 'EIO: disk  gone bad at offset 512',
  );
  assert.deepEqual(decodeErrorChunk(REPLY_TYPE_ERROR, errorChunk(22, '')), {
    errno: 22,
    message: '',
    offset: null,
  });
  assert.equal(serverText(Buffer.from('x'.repeat(500))).length, 201);
});

test('block status extents are checked, merged and cut at the end of the request', () => {
  const r = decodeBlockStatus(
    status(3, [
      [4096, 1],
      [4096, 1],
      [8192, 0],
      [1 << 30, 1],
    ]),
    65536,
    20000,
  );
  assert.equal(r.contextId, 3);
  assert.deepEqual(r.extents, [
    { offset: 65536, length: 8192, flags: 1 },
    { offset: 73728, length: 8192, flags: 0 },
    { offset: 81920, length: 3616, flags: 1 },
  ]);
  assert.throws(() => decodeBlockStatus(status(3, [[0, 1]]), 0, 100), /0 bytes/);
  assert.throws(
    () =>
      decodeBlockStatus(
        status(3, [
          [100, 1],
          [5, 0],
        ]),
        0,
        100,
      ),
    /past the end/,
  );
  assert.throws(() => decodeBlockStatus(status(3, []), 0, 100), /chunk of 4 bytes/);
  assert.throws(() => decodeBlockStatus(Buffer.alloc(17), 0, 100), /chunk of 17 bytes/);
});
