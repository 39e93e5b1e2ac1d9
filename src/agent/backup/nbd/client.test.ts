/**
 * The client against a scripted server on a unix socket: the handshake a QEMU server gives,
 * then replies crafted to be wrong in one way each. Whatever the server sends, every call ends
 * in a TernError within its deadline, never a crash or a hang.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TernError } from '../../../errors.ts';
import { rejectsWith } from '../../../testing.ts';
import { NbdClient } from './client.ts';
import { IHAVEOPT, NBDMAGIC, OPTION_REPLY_MAGIC } from './protocol.ts';

const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-nbd-'));
after(() => fs.rm(dir, { recursive: true, force: true }));
let n = 0;

const SIZE = 1 << 20;
const BITMAP = 'qemu:dirty-bitmap:tern';

interface Request {
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
}

interface Script {
  /** Replaces the whole server side after accept (for broken greetings). */
  raw?: (s: net.Socket) => void;
  /** Context names the server selects, in order (default: whatever is asked). */
  contexts?: (asked: string[]) => string[];
  onRequest?: (r: Request, s: net.Socket) => void;
}

const optionReply = (option: number, type: number, data = Buffer.alloc(0)) => {
  const h = Buffer.alloc(20);
  h.writeBigUInt64BE(OPTION_REPLY_MAGIC);
  h.writeUInt32BE(option, 8);
  h.writeUInt32BE(type, 12);
  h.writeUInt32BE(data.length, 16);
  return Buffer.concat([h, data]);
};

const chunk = (flags: number, type: number, cookie: bigint, payload = Buffer.alloc(0), length?: number) => {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(0x668e33ef);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(cookie, 8);
  h.writeUInt32BE(length ?? payload.length, 16);
  return Buffer.concat([h, payload]);
};

const u64 = (v: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
};
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

/** A fake server: QEMU's handshake, then `onRequest` for each request. */
async function serve(script: Script): Promise<string> {
  const sock = path.join(dir, `s${n++}.sock`);
  const open = new Set<net.Socket>();
  const server = net.createServer((s) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
    if (script.raw) return script.raw(s);
    const greeting = Buffer.alloc(18);
    greeting.writeBigUInt64BE(NBDMAGIC);
    greeting.writeBigUInt64BE(IHAVEOPT, 8);
    greeting.writeUInt16BE(3, 16);
    s.write(greeting);
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    let selected: string[] = [];
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16 || buf.length < 16 + buf.readUInt32BE(12)) return;
          const option = buf.readUInt32BE(8);
          const data = buf.subarray(16, 16 + buf.readUInt32BE(12));
          buf = buf.subarray(16 + data.length);
          if (option === 8) s.write(optionReply(8, 1));
          else if (option === 10) {
            const nameLen = data.readUInt32BE(0);
            const count = data.readUInt32BE(4 + nameLen);
            const asked: string[] = [];
            for (let p = 8 + nameLen, i = 0; i < count; i++) {
              const len = data.readUInt32BE(p);
              asked.push(data.subarray(p + 4, p + 4 + len).toString());
              p += 4 + len;
            }
            selected = script.contexts ? script.contexts(asked) : asked;
            selected.forEach((c, i) => {
              s.write(optionReply(10, 4, Buffer.concat([u32(i + 1), Buffer.from(c)])));
            });
            s.write(optionReply(10, 1));
          } else if (option === 7 && data.subarray(4, 4 + data.readUInt32BE(0)).toString() === 'nope') {
            s.write(optionReply(7, 0x80000006, Buffer.from('no such export\x1b[31m')));
          } else if (option === 7) {
            s.write(
              optionReply(7, 3, Buffer.concat([Buffer.from([0, 0]), u64(SIZE), Buffer.from([0x01, 0x03])])),
            );
            s.write(
              optionReply(7, 3, Buffer.concat([Buffer.from([0, 3]), u32(512), u32(4096), u32(256 * 1024)])),
            );
            s.write(optionReply(7, 1));
            phase = 'transmission';
          } else s.write(optionReply(option, 0x80000001));
        } else {
          if (buf.length < 28) return;
          const r = {
            type: buf.readUInt16BE(6),
            cookie: buf.readBigUInt64BE(8),
            offset: Number(buf.readBigUInt64BE(16)),
            length: buf.readUInt32BE(24),
          };
          buf = buf.subarray(28);
          if (r.type === 2) s.end();
          else script.onRequest?.(r, s);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  after(() => {
    for (const s of open) s.destroy();
    server.close();
  });
  return sock;
}

/** Data of the fake disk: byte i is i mod 251. */
const disk = (offset: number, length: number) =>
  Buffer.from(Array.from({ length }, (_, i) => (offset + i) % 251));

/** A well-behaved server's read: the second half first, as a hole if it is past 512 KiB. */
function goodRead(r: Request, s: net.Socket): void {
  const half = r.length / 2;
  const second = r.offset + half;
  if (second >= SIZE / 2) s.write(chunk(0, 2, r.cookie, Buffer.concat([u64(second), u32(half)])));
  else s.write(chunk(0, 1, r.cookie, Buffer.concat([u64(second), disk(second, half)])));
  s.write(chunk(1, 1, r.cookie, Buffer.concat([u64(r.offset), disk(r.offset, half)])));
}

/** Block status: allocation says all data; the bitmap says 64 KiB dirty at 128 KiB, given 4 KiB at a time. */
function goodStatus(r: Request, s: net.Socket): void {
  s.write(chunk(0, 5, r.cookie, Buffer.concat([u32(1), u32(r.length), u32(0)])));
  const dirty = r.offset >= 131072 && r.offset < 196608 ? 1 : 0;
  s.write(chunk(1, 5, r.cookie, Buffer.concat([u32(2), u32(4096), u32(dirty)])));
}

test('handshake, reads put together from data and holes, extents asked until covered', async () => {
  const sock = await serve({ onRequest: (r, s) => (r.type === 0 ? goodRead(r, s) : goodStatus(r, s)) });
  const c = await NbdClient.connect(
    { path: sock },
    { exportName: 'vda', metaContexts: ['base:allocation', BITMAP] },
  );
  assert.equal(c.size, SIZE);
  assert.equal(c.info.maxPayload, 256 * 1024);
  // Above the server's maximum payload, a read is split; the pieces come back in order.
  const piece = 256 * 1024;
  const expected: Buffer[] = [];
  for (let o = 0; o < SIZE; o += piece) {
    const second = o + piece / 2;
    expected.push(disk(o, piece / 2), second >= SIZE / 2 ? Buffer.alloc(piece / 2) : disk(second, piece / 2));
  }
  assert.deepEqual(await c.read(0, SIZE), Buffer.concat(expected));
  assert.deepEqual(await c.read(0, 8192), disk(0, 8192));
  const tail = await c.read(SIZE - 8192, 8192);
  assert.deepEqual(tail, Buffer.concat([disk(SIZE - 8192, 4096), Buffer.alloc(4096)]));
  assert.deepEqual(await c.extents(BITMAP, 0, 262144), [
    { offset: 0, length: 131072, flags: 0 },
    { offset: 131072, length: 65536, flags: 1 },
    { offset: 196608, length: 65536, flags: 0 },
  ]);
  assert.deepEqual(await c.extents('base:allocation', 0, SIZE), [{ offset: 0, length: SIZE, flags: 0 }]);
  await rejectsWith(c.read(SIZE - 4096, 8192), 'invalid_request', /past the end/);
  await rejectsWith(c.read(1, 4096), 'invalid_request', /aligned/);
  await c.disconnect();
  await rejectsWith(c.read(0, 4096), 'unavailable', /closed/);
});

test('a dirty bitmap the export does not offer is reported by name, not as a broken server', async () => {
  const sock = await serve({ contexts: (asked) => asked.filter((c) => c === 'base:allocation') });
  await rejectsWith(
    NbdClient.connect({ path: sock }, { exportName: 'vda', metaContexts: ['base:allocation', BITMAP] }),
    'not_found',
    /offers no qemu:dirty-bitmap:tern/,
  );
});

test('an export the server does not have, or no server at all, is said so', async () => {
  const sock = await serve({});
  await rejectsWith(
    NbdClient.connect({ path: sock }, { exportName: 'nope' }),
    'not_found',
    /NBD handshake at .*: unknown export: no such export \[31m$/,
  );
  await rejectsWith(
    NbdClient.connect({ path: `${sock}.absent` }, { exportName: 'vda' }),
    'unavailable',
    /ENOENT/,
  );
});

test('a server that is not a fixed newstyle NBD server, or selects what was not asked, is refused', async () => {
  const cases: [string, Script, RegExp][] = [
    ['http', { raw: (s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n') }, /not an NBD server/],
    ['silent close', { raw: (s) => s.end() }, /closed/],
    ['other context', { contexts: () => ['qemu:dirty-bitmap:other'] }, /not asked for/],
  ];
  for (const [name, script, message] of cases) {
    const sock = await serve(script);
    const err = await NbdClient.connect({ path: sock }, { exportName: 'vda', metaContexts: [BITMAP] }).then(
      () => assert.fail(name),
      (e: unknown) => e,
    );
    assert.ok(err instanceof TernError, `${name}: ${String(err)}`);
    assert.match(err.message, message, name);
  }
});

test('a server error on a read fails that read only; the connection goes on', async () => {
  let first = true;
  const sock = await serve({
    onRequest: (r, s) => {
      if (!first) return goodRead(r, s);
      first = false;
      const msg = Buffer.from('bad sector');
      s.write(
        chunk(0, 0x8002, r.cookie, Buffer.concat([u32(5), Buffer.from([0, msg.length]), msg, u64(r.offset)])),
      );
      s.write(chunk(1, 0, r.cookie));
    },
  });
  const c = await NbdClient.connect({ path: sock }, { exportName: 'vda' });
  const err = await rejectsWith(c.read(4096, 4096), 'storage_error', /EIO: bad sector at offset 4096/);
  assert.equal(err.details?.errno, 5);
  assert.deepEqual(await c.read(4096, 4096), disk(4096, 4096));
  await c.disconnect();
});

test('replies that break the protocol end the connection with a clear error, without waiting for what they announce', async () => {
  const cases: [string, (r: Request, s: net.Socket) => void, string, RegExp][] = [
    [
      'huge chunk',
      (r, s) => s.write(chunk(1, 1, r.cookie, Buffer.alloc(0), 0xffffffff)),
      'protocol_error',
      /bytes for a read/,
    ],
    ['wrong cookie', (r, s) => s.write(chunk(1, 0, r.cookie + 7n)), 'protocol_error', /cookie/],
    ['bad magic', (_r, s) => s.write(Buffer.alloc(20, 0x41)), 'protocol_error', /magic/],
    [
      'simple reply to read',
      (r, s) => s.write(Buffer.concat([u32(0x67446698), u32(0), u64(Number(r.cookie))])),
      'protocol_error',
      /simple reply/,
    ],
    [
      'short coverage',
      (r, s) => s.write(chunk(1, 1, r.cookie, Buffer.concat([u64(r.offset), Buffer.alloc(10)]))),
      'protocol_error',
      /covers 10 of/,
    ],
    [
      'block status to a read',
      (r, s) => s.write(chunk(1, 5, r.cookie, Buffer.concat([u32(1), u32(4096), u32(0)]))),
      'protocol_error',
      /chunk type 5/,
    ],
    [
      'closed mid-reply',
      (r, s) => s.end(chunk(1, 1, r.cookie, Buffer.concat([u64(r.offset), Buffer.alloc(10)]), 4104)),
      'unavailable',
      /closed/,
    ],
    ['silence', () => {}, 'timeout', /no answer within/],
  ];
  for (const [name, reply, code, message] of cases) {
    const sock = await serve({ onRequest: reply });
    const c = await NbdClient.connect({ path: sock }, { exportName: 'vda', timeoutMs: 500 });
    const started = Date.now();
    const err = await rejectsWith(c.read(0, 4096), code, message);
    assert.ok(Date.now() - started < 2000, `${name} took ${Date.now() - started} ms`);
    assert.ok(err.message.includes('NBD'), name);
    // The connection is not trusted again.
    await rejectsWith(c.read(0, 4096), code);
    await c.disconnect();
  }
});

test('random bytes as replies never crash the client: every read ends in a TernError', async () => {
  let seed = 1;
  const sock = await serve({
    onRequest: (r, s) => {
      seed++;
      const garbage = randomBytes(1 + (seed % 200));
      // Sometimes a valid header with a random payload, sometimes pure noise.
      if (seed % 2) s.write(Buffer.concat([chunk(seed % 4 === 1 ? 1 : 0, seed % 7, r.cookie, garbage)]));
      else s.write(garbage);
      if (seed % 3 === 0) s.end();
    },
  });
  for (let i = 0; i < 40; i++) {
    const c = await NbdClient.connect(
      { path: sock },
      { exportName: 'vda', metaContexts: [BITMAP], timeoutMs: 300 },
    );
    const call = i % 2 ? c.read(0, 65536) : c.extents(BITMAP, 0, 65536);
    const err = await call.then(
      () => null,
      (e: unknown) => e,
    );
    if (err !== null) assert.ok(err instanceof TernError, String(err));
    await c.disconnect();
  }
});

test('writes to a read-only export are refused before anything is sent', async () => {
  const seen: number[] = [];
  const sock = await serve({ onRequest: (r) => seen.push(r.type) });
  const c = await NbdClient.connect({ path: sock }, { exportName: 'vda' });
  await rejectsWith(c.write(0, Buffer.alloc(4096)), 'invalid_request', /read-only/);
  await rejectsWith(c.writeZeroes(0, 4096), 'invalid_request', /read-only/);
  await c.disconnect();
  assert.deepEqual(seen, []);
});
