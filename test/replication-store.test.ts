/**
 * The replica's host side of replication with real qemu-img and qemu-nbd (no VM): streams built
 * with the encoder become recovery points whose images read back byte for byte; a damaged or
 * cut stream commits nothing; prune merges and every kept point keeps its bytes; a lent point
 * is pinned; an interrupted initial copy resumes; a merge killed half-way is finished by the
 * next call.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { FrameEncoder } from '../src/agent/replication/frames.ts';
import { receivePoint } from '../src/agent/replication/receive.ts';
import { pointFile } from '../src/agent/replication/replica-books.ts';
import { ReplicaStore } from '../src/agent/replication/replica-store.ts';
import { TernError } from '../src/errors.ts';
import { repoRoot, tempDir } from './harness.ts';

const MiB = 1024 * 1024;
const root = tempDir('rp-store');
const pools = { p: root };
after(() => fs.rmSync(root, { recursive: true, force: true }));

const rid = (n: number) => `0b4a1c9e-7f1d-4a5e-9a51-2f0e3c6d8b${String(n).padStart(2, '0')}`;
const t = (m: number) => `2026-12-07T18-${String(m).padStart(2, '0')}-00Z`;
const takenAt = (m: number) => `2026-12-07T18:${String(m).padStart(2, '0')}:00.000Z`;

function random(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

/** A disk as it should read: the model every point is checked against. */
type Model = Record<string, Buffer>;
type Write = { disk: number; offset: number; data?: Buffer; zeroes?: number };

function apply(model: Model, names: string[], writes: Write[]): Model {
  const next: Model = Object.fromEntries(Object.entries(model).map(([k, v]) => [k, Buffer.from(v)]));
  for (const w of writes) {
    const disk = next[names[w.disk]!]!;
    if (w.data) w.data.copy(disk, w.offset);
    else disk.fill(0, w.offset, w.offset + w.zeroes!);
  }
  return next;
}

/** The stream of one point: its writes in order per disk, every disk ended, then the trailer. */
function streamOf(
  replication: string,
  point: string,
  base: string | null,
  disks: { name: string; sizeBytes: number }[],
  writes: Write[],
  m: number,
): Buffer[] {
  const e = new FrameEncoder({ replication, point, base, takenAt: takenAt(m), disks });
  const out = [e.start()];
  disks.forEach((_, i) => {
    for (const w of writes.filter((x) => x.disk === i))
      out.push(w.data ? e.data(i, w.offset, w.data) : e.zeroes(i, w.offset, w.zeroes!));
    out.push(e.endDisk(i));
  });
  out.push(e.trailer({ consistency: 'application', consistencyNote: null }));
  return out;
}

async function* chunked(parts: Buffer[], size = 256 * 1024): AsyncGenerator<Buffer> {
  const all = Buffer.concat(parts);
  for (let i = 0; i < all.length; i += size) yield all.subarray(i, i + size);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A qcow2 file (with its chain) read back as raw bytes. */
function readImage(file: string): Buffer {
  const out = path.join(root, `read-${process.pid}.raw`);
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', file, out]);
  try {
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

function assertPoint(replication: string, point: string, model: Model): void {
  const dir = path.join(root, 'replicas', replication);
  for (const [name, bytes] of Object.entries(model))
    assert.equal(
      sha(readImage(pointFile(dir, name, point))),
      sha(bytes),
      `${name} of ${point} reads back its bytes`,
    );
}

async function refusedWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof TernError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

const disks = [
  { name: 'disk0', sizeBytes: 4 * MiB },
  { name: 'disk1', sizeBytes: 1 * MiB },
];
const names = disks.map((d) => d.name);
const empty: Model = { disk0: Buffer.alloc(4 * MiB), disk1: Buffer.alloc(1 * MiB) };

async function cycle(
  store: ReplicaStore,
  replication: string,
  m: number,
  base: number | null,
  writes: Write[],
  damage?: (parts: Buffer[]) => Buffer[],
) {
  const point = t(m);
  const { ticket } = await store.prepare(replication, {
    pool: 'p',
    point,
    base: base === null ? null : t(base),
    disks,
  });
  let parts = streamOf(replication, point, base === null ? null : t(base), disks, writes, m);
  if (damage) parts = damage(parts);
  return receivePoint(store, replication, ticket, chunked(parts));
}

describe('replica store', () => {
  const store = new ReplicaStore(pools);
  const r = rid(1);
  const models: Record<string, Model> = {};
  const w1: Write[] = [
    { disk: 0, offset: 0, data: random(256 * 1024, 1) },
    { disk: 0, offset: MiB, data: Buffer.alloc(64 * 1024, 7) },
    { disk: 0, offset: 3 * MiB, data: random(MiB, 2) },
    { disk: 1, offset: 512 * 1024, data: random(64 * 1024, 3) },
  ];
  const w2: Write[] = [
    { disk: 0, offset: 64 * 1024, data: random(64 * 1024, 4) },
    { disk: 0, offset: 3 * MiB, zeroes: 128 * 1024 },
    { disk: 1, offset: 0, data: random(4096, 5) },
  ];

  it('an initial copy and an incremental point read back byte-identical, the first one untouched', async () => {
    const res = await cycle(store, r, 1, null, w1);
    models[t(1)] = apply(empty, names, w1);
    assert.equal(res.point, t(1));
    assert.equal(res.writtenBytes, 256 * 1024 + 64 * 1024 + MiB + 64 * 1024);
    assert.match(res.sha256, /^[0-9a-f]{64}$/);
    const res2 = await cycle(store, r, 2, 1, w2);
    models[t(2)] = apply(models[t(1)]!, names, w2);
    assert.equal(res2.consistency, 'application');
    assertPoint(r, t(1), models[t(1)]!);
    assertPoint(r, t(2), models[t(2)]!);
    const s = await store.status(r, 'p');
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(1), t(2)],
    );
    assert.equal(s.pending, null);
    assert.deepEqual(s.points[1]!.disks[0]!.volume, { pool: 'p', path: `replicas/${r}/disk0/${t(2)}.qcow2` });
    assert.ok(s.bytes > MiB);
  });

  it('a corrupted frame and a cut stream are refused, nothing committed, the older points intact', async () => {
    const w3: Write[] = [{ disk: 0, offset: 2 * MiB, data: random(128 * 1024, 6) }];
    await refusedWith(
      cycle(store, r, 3, 2, w3, (parts) => {
        const frame = Buffer.from(parts[1]!);
        frame[52 + 1000] = frame[52 + 1000]! ^ 0xff;
        return [parts[0]!, frame, ...parts.slice(2)];
      }),
      'invalid_request',
      /does not match its SHA-256|does not decompress/,
    );
    await refusedWith(
      cycle(store, r, 3, 2, w3, (parts) => [Buffer.concat(parts).subarray(0, 100_000)]),
      'invalid_request',
      /ends (inside a frame|at byte)/,
    );
    const s = await store.status(r, 'p');
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(1), t(2)],
    );
    assert.equal(s.pending?.point, t(3));
    assertPoint(r, t(1), models[t(1)]!);
    assertPoint(r, t(2), models[t(2)]!);
    // A stream for a point that was not prepared is refused by its header.
    const { ticket } = await store.prepare(r, { pool: 'p', point: t(3), base: t(2), disks });
    await refusedWith(
      receivePoint(store, r, ticket, chunked(streamOf(r, t(4), t(2), disks, w3, 4))),
      'invalid_request',
      /its point \(.*\) is not the prepared cycle's/,
    );
    // The ticket went with that stream.
    await refusedWith(
      receivePoint(store, r, ticket, chunked(streamOf(r, t(3), t(2), disks, w3, 3))),
      'unauthorized',
      /no cycle .* awaits a stream with this ticket/,
    );
  });

  it('a sender that falls silent is refused after the idle bound, and the cycle can be prepared again', async () => {
    const w3: Write[] = [{ disk: 0, offset: 2 * MiB, data: random(128 * 1024, 6) }];
    const { ticket } = await store.prepare(r, { pool: 'p', point: t(3), base: t(2), disks });
    const parts = streamOf(r, t(3), t(2), disks, w3, 3);
    async function* stalls() {
      yield parts[0]!;
      await new Promise(() => {});
    }
    await refusedWith(
      receivePoint(store, r, ticket, stalls(), { idleMs: 300 }),
      'timeout',
      /sent nothing for 0.3 s/,
    );
    const s = await store.status(r, 'p');
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(1), t(2)],
    );
  });

  it('prune merges the points not kept and every kept point keeps its exact bytes', async () => {
    const w3: Write[] = [{ disk: 0, offset: 2 * MiB, data: random(128 * 1024, 6) }];
    const w4: Write[] = [
      { disk: 0, offset: 64 * 1024, data: random(4096, 8) },
      { disk: 1, offset: 512 * 1024, zeroes: 64 * 1024 },
    ];
    await cycle(store, r, 3, 2, w3);
    models[t(3)] = apply(models[t(2)]!, names, w3);
    await cycle(store, r, 4, 3, w4);
    models[t(4)] = apply(models[t(3)]!, names, w4);
    await refusedWith(store.prune(r, 'p', [t(3)]), 'invalid_request', /newest recovery point/);
    const s = await store.prune(r, 'p', [t(2), t(4)]);
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(2), t(4)],
    );
    assertPoint(r, t(2), models[t(2)]!);
    assertPoint(r, t(4), models[t(4)]!);
    const files = fs.readdirSync(path.join(root, 'replicas', r, 'disk0')).sort();
    assert.deepEqual(files, [`${t(2)}.qcow2`, `${t(4)}.qcow2`]);
    // The next cycle goes on after the merges.
    const w5: Write[] = [{ disk: 1, offset: 0, data: random(8192, 9) }];
    await cycle(store, r, 5, 4, w5);
    models[t(5)] = apply(models[t(4)]!, names, w5);
    assertPoint(r, t(5), models[t(5)]!);
  });

  it('a lent point is pinned: prune keeps it and what it stands on, remove is refused naming the volume', async () => {
    const target = { pool: 'p', path: 'vms/test/disk0.qcow2' };
    const inside = { pool: 'p', path: `replicas/${r}/disk0/lent.qcow2` };
    await refusedWith(
      store.lend(r, t(4), { pool: 'p', disks: [{ name: 'disk0', target: inside }] }),
      'invalid_request',
      /inside the replica's own directory/,
    );
    const s = await store.lend(r, t(4), { pool: 'p', disks: [{ name: 'disk0', target }] });
    assert.deepEqual(s.points.find((p) => p.id === t(4))!.pinnedBy, [target]);
    assert.equal(sha(readImage(path.join(root, target.path))), sha(models[t(4)]!.disk0!));
    // Lent twice (a retry) is the same volume.
    await store.lend(r, t(4), { pool: 'p', disks: [{ name: 'disk0', target }] });
    const pruned = await store.prune(r, 'p', [t(5)]);
    assert.deepEqual(
      pruned.points.map((p) => p.id),
      [t(2), t(4), t(5)],
    );
    await refusedWith(store.remove(r, 'p'), 'conflict', /vms\/test\/disk0\.qcow2/);
    // The volume gone, its pin goes with it.
    fs.rmSync(path.join(root, target.path));
    const freed = await store.prune(r, 'p', [t(5)]);
    assert.deepEqual(
      freed.points.map((p) => p.id),
      [t(5)],
    );
    assertPoint(r, t(5), models[t(5)]!);
    await store.remove(r, 'p');
    assert.equal(fs.existsSync(path.join(root, 'replicas', r)), false);
    assert.deepEqual((await store.status(r, 'p')).points, []);
  });

  it('adopted volumes are a first point, never written after: a cycle builds on it, prune merges into its own file; a lend adds its bitmap', async () => {
    const r = rid(40);
    const model = apply(empty, names, [
      { disk: 0, offset: 0, data: random(64 * 1024, 41) },
      { disk: 1, offset: 4096, data: random(4096, 42) },
    ]);
    fs.mkdirSync(path.join(root, 'vms', 'old'), { recursive: true });
    const volumes = names.map((n) => ({ pool: 'p', path: `vms/old/${n}.qcow2` }));
    for (const [i, n] of names.entries()) {
      const raw = path.join(root, `${n}.raw`);
      fs.writeFileSync(raw, model[n]!);
      execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, path.join(root, volumes[i]!.path)]);
      fs.rmSync(raw);
    }
    const digests = volumes.map((v) => sha(fs.readFileSync(path.join(root, v.path))));
    const req = {
      pool: 'p',
      point: t(1),
      takenAt: takenAt(1),
      consistency: 'crash' as const,
      disks: disks.map((d, i) => ({ ...d, volume: volumes[i]! })),
    };
    await refusedWith(
      store.adopt(r, { ...req, disks: [{ ...req.disks[0]!, volume: { pool: 'q', path: 'x.qcow2' } }] }),
      'invalid_request',
      /not in pool p/,
    );
    await refusedWith(
      store.adopt(r, { ...req, disks: [{ ...req.disks[0]!, sizeBytes: MiB }] }),
      'conflict',
      /holds 4194304 bytes/,
    );
    assert.deepEqual(
      (await store.adopt(r, req)).points.map((p) => p.id),
      [t(1)],
    );
    // Again, as a resumed failover asks: done.
    assert.deepEqual(
      (await store.adopt(r, req)).points.map((p) => p.id),
      [t(1)],
    );
    assertPoint(r, t(1), model);
    const writes: Write[] = [{ disk: 0, offset: 2 * MiB, data: random(8192, 43) }];
    await cycle(store, r, 2, 1, writes);
    const next = apply(model, names, writes);
    assertPoint(r, t(2), next);
    await refusedWith(store.adopt(r, req), 'conflict', /has recovery points/);
    const after = await store.prune(r, 'p', [t(2)]);
    assert.deepEqual(
      after.points.map((p) => p.id),
      [t(2)],
    );
    assertPoint(r, t(2), next);
    assert.deepEqual(
      volumes.map((v) => sha(fs.readFileSync(path.join(root, v.path)))),
      digests,
      'the adopted volumes were never written',
    );
    const bitmap = `tern-rp-0b4a1c9e-${t(2)}`;
    await store.lend(r, t(2), {
      pool: 'p',
      disks: [{ name: 'disk0', target: { pool: 'p', path: 'vms/new/disk0.qcow2' } }],
      bitmap,
    });
    const info = JSON.parse(
      execFileSync('qemu-img', ['info', '--output=json', path.join(root, 'vms/new/disk0.qcow2')], {
        encoding: 'utf8',
      }),
    ) as { 'format-specific': { data: { bitmaps?: { name: string; flags: string[] }[] } } };
    assert.deepEqual(info['format-specific'].data.bitmaps, [
      { name: bitmap, flags: ['auto'], granularity: 65536 },
    ]);
  });

  it('an interrupted initial copy resumes from the offsets it recorded', async () => {
    const q = rid(2);
    const big = [{ name: 'disk0', sizeBytes: 32 * MiB }];
    const data = random(20 * MiB, 11);
    const writes: Write[] = [
      { disk: 0, offset: 0, data: data.subarray(0, 10 * MiB) },
      { disk: 0, offset: 12 * MiB, data: data.subarray(10 * MiB) },
    ];
    const model: Model = { disk0: Buffer.alloc(32 * MiB) };
    for (const w of writes) w.data!.copy(model.disk0!, w.offset);
    const { ticket, resume } = await store.prepare(q, { pool: 'p', point: t(1), base: null, disks: big });
    assert.deepEqual(resume, [{ disk: 'disk0', offset: 0 }]);
    const whole = Buffer.concat(streamOf(q, t(1), null, big, writes, 1));
    await refusedWith(
      receivePoint(store, q, ticket, chunked([whole.subarray(0, 18 * MiB)])),
      'invalid_request',
      /ends/,
    );
    const again = await store.prepare(q, { pool: 'p', point: t(1), base: null, disks: big });
    const at = again.resume[0]!.offset;
    assert.ok(at >= 8 * MiB && at < 18 * MiB, `resumes past what arrived whole (${at})`);
    // The resumed stream sends only what lies at or past the offset.
    const rest: Write[] = [];
    for (const w of writes) {
      const end = w.offset + w.data!.length;
      if (end <= at) continue;
      const from = Math.max(w.offset, at);
      rest.push({ disk: 0, offset: from, data: w.data!.subarray(from - w.offset) });
    }
    const res = await receivePoint(store, q, again.ticket, chunked(streamOf(q, t(1), null, big, rest, 1)));
    assert.equal(res.writtenBytes, 20 * MiB - (at <= 10 * MiB ? at : at - 2 * MiB));
    assertPoint(q, t(1), model);
  });

  it('a merge killed half-way is finished by the next call on a fresh store', async () => {
    const k = rid(3);
    const s1 = new ReplicaStore(pools);
    const wa: Write[] = [{ disk: 0, offset: 0, data: random(128 * 1024, 21) }];
    const wb: Write[] = [{ disk: 0, offset: 64 * 1024, data: random(128 * 1024, 22) }];
    const wc: Write[] = [{ disk: 1, offset: 0, data: random(4096, 23) }];
    await cycle(s1, k, 1, null, wa);
    await cycle(s1, k, 2, 1, wb);
    await cycle(s1, k, 3, 2, wc);
    const m1 = apply(empty, names, wa);
    const m3 = apply(apply(m1, names, wb), names, wc);
    const dir = path.join(root, 'replicas', k);
    // Dropping point 2: the journal written, disk0 committed and renamed, disk1 committed only.
    const books = JSON.parse(fs.readFileSync(path.join(dir, 'points.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'points.json'), JSON.stringify({ ...books, merging: { drop: t(2) } }));
    for (const d of names)
      execFileSync('qemu-img', ['commit', '-q', '-d', '-f', 'qcow2', pointFile(dir, d, t(3))]);
    fs.renameSync(pointFile(dir, 'disk0', t(2)), pointFile(dir, 'disk0', t(3)));
    const s = await new ReplicaStore(pools).status(k, 'p');
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(1), t(3)],
    );
    assertPoint(k, t(1), m1);
    assertPoint(k, t(3), m3);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'points.json'), 'utf8')).merging, null);
  });

  it('an agent killed mid-stream leaves the points as they were; the next cycle resumes or starts afresh', async () => {
    const k = rid(4);
    const big = [{ name: 'disk0', sizeBytes: 32 * MiB }];
    const data = random(20 * MiB, 31);
    const writes: Write[] = [
      { disk: 0, offset: 0, data: data.subarray(0, 10 * MiB) },
      { disk: 0, offset: 12 * MiB, data: data.subarray(10 * MiB) },
    ];
    const m1: Model = { disk0: Buffer.alloc(32 * MiB) };
    for (const w of writes) w.data!.copy(m1.disk0!, w.offset);
    const p1 = await new ReplicaStore(pools).prepare(k, { pool: 'p', point: t(1), base: null, disks: big });
    await receiveInChildKilled(
      k,
      p1.ticket,
      Buffer.concat(streamOf(k, t(1), null, big, writes, 1)),
      18 * MiB,
    );
    const again = await new ReplicaStore(pools).prepare(k, {
      pool: 'p',
      point: t(1),
      base: null,
      disks: big,
    });
    const at = again.resume[0]!.offset;
    assert.ok(at >= 8 * MiB, `resumes past what arrived whole (${at})`);
    const rest = writes.filter((w) => w.offset >= at);
    const store = new ReplicaStore(pools);
    await receivePoint(store, k, again.ticket, chunked(streamOf(k, t(1), null, big, rest, 1)));
    assertPoint(k, t(1), m1);

    const w2: Write[] = [{ disk: 0, offset: 0, data: random(6 * MiB, 32) }];
    const p2 = await store.prepare(k, { pool: 'p', point: t(2), base: t(1), disks: big });
    await receiveInChildKilled(k, p2.ticket, Buffer.concat(streamOf(k, t(2), t(1), big, w2, 2)), 5 * MiB);
    const fresh = new ReplicaStore(pools);
    const s = await fresh.status(k, 'p');
    assert.deepEqual(
      s.points.map((p) => p.id),
      [t(1)],
    );
    assert.equal(s.pending?.point, t(2));
    assertPoint(k, t(1), m1);
    const w3: Write[] = [{ disk: 0, offset: 4 * MiB, data: random(MiB, 33) }];
    const p3 = await fresh.prepare(k, { pool: 'p', point: t(3), base: t(1), disks: big });
    await receivePoint(fresh, k, p3.ticket, chunked(streamOf(k, t(3), t(1), big, w3, 3)));
    assertPoint(k, t(1), m1);
    assertPoint(k, t(3), apply(m1, ['disk0'], w3));
    assert.deepEqual(fs.readdirSync(path.join(root, 'replicas', k, 'disk0')).sort(), [
      `${t(1)}.qcow2`,
      `${t(3)}.qcow2`,
    ]);
  });
});

/**
 * Receives `stream` in another process that stalls after `stallAt` bytes (everything before
 * it written), and SIGKILLs that process there: an agent killed in the middle of a stream.
 */
async function receiveInChildKilled(replication: string, ticket: string, stream: Buffer, stallAt: number) {
  const file = path.join(root, `stream-${replication}`);
  fs.writeFileSync(file, stream);
  const script = path.join(root, 'receive-child.ts');
  fs.writeFileSync(
    script,
    `import fs from 'node:fs';
import { receivePoint } from ${JSON.stringify(path.join(repoRoot, 'src/agent/replication/receive.ts'))};
import { ReplicaStore } from ${JSON.stringify(path.join(repoRoot, 'src/agent/replication/replica-store.ts'))};
const [pool, replication, ticket, file, stallAt] = process.argv.slice(2);
const bytes = fs.readFileSync(file);
async function* body() {
  for (let i = 0; i < Number(stallAt); i += 1 << 20) yield bytes.subarray(i, Math.min(Number(stallAt), i + (1 << 20)));
  process.stdout.write('stalled\\n');
  await new Promise(() => setInterval(() => {}, 1000));
}
await receivePoint(new ReplicaStore({ p: pool }), replication, ticket, body());
`,
  );
  const child = spawn(process.execPath, [script, root, replication, ticket, file, String(stallAt)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the receiving process never stalled')), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('stalled')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`the receiving process ended (${code}) before it stalled`)),
    );
  });
  child.kill('SIGKILL');
  await exited;
  fs.rmSync(file);
}
