/**
 * bench/backup-chunks: what the chunk size costs, to choose it (issue 16 asks for a measured
 * choice). Three figures per chunk size, side by side in one run:
 *
 * - read amplification: a disk of --disk GiB gets 1% of its 4 KiB blocks rewritten at random
 *   (bitmap granularity 64 KiB, QEMU's default for qcow2); the bytes an incremental reads
 *   (changedChunks) against the bytes dirtied and against the 4 MiB-chunk figure (the goal is
 *   ≤ ¼ of it); and the chunk files and index bytes a full backup of 1 TiB makes. Pure arithmetic.
 * - encode: SHA-256 (or the keyed digest) + zstd level 1 (+ AES-256-GCM), MB/s of plaintext, on
 *   a mix of random, text-like and zero data.
 * - insert: the same data into a datastore in --dir (each chunk fsynced and renamed, the
 *   directories flushed once at the end, as a backup's commit does), MB/s, one insert at a time
 *   and four at once.
 *
 *   node bench/backup-chunks.ts [--disk 16] [--data 64] [--dir /var/tmp]
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { changedChunks } from '../src/agent/backup/changed-chunks.ts';
import type { Extent } from '../src/agent/backup/nbd/block-status.ts';
import { encodeChunk } from '../src/backup/datastore/chunk-codec.ts';
import { deriveDatastoreKey } from '../src/backup/datastore/chunk-key.ts';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import { seededRandom } from '../test/seeded-random.ts';
import { loadavg, table } from './report.ts';

const { values } = parseArgs({
  options: {
    disk: { type: 'string', default: '16' },
    data: { type: 'string', default: '64' },
    dir: { type: 'string', default: os.tmpdir() },
  },
});
const K = 1024;
const M = K * K;
const GRANULE = 64 * K;
const sizes = [64 * K, 256 * K, 1 * M, 4 * M];
const diskBytes = Number(values.disk) * K * M;
const dataBytes = Number(values.data) * M;

// 1% of the 4 KiB blocks, rewritten at random; the bitmap marks their 64 KiB granules.
const random = seededRandom(16);
const blocks = diskBytes / 4096;
const granules = new Set<number>();
const writes = Math.round(blocks * 0.01);
for (let i = 0; i < writes; i++) granules.add(Math.floor((Math.floor(random() * blocks) * 4096) / GRANULE));
const extents: Extent[] = [...granules]
  .sort((a, b) => a - b)
  .map((g) => ({ offset: g * GRANULE, length: GRANULE, flags: 1 }));
const dirtied = writes * 4096;
const readAt = new Map(sizes.map((c) => [c, changedChunks(extents, c).length * c]));

// Plaintext: a third random, a third text-like, a third zeroes, in 64 KiB pieces interleaved.
const text = Buffer.from('INSERT INTO ledger VALUES (42, "Alice", "Bob", 17.00); -- '.repeat(1200)).subarray(
  0,
  64 * K,
);
const pieces: Buffer[] = [];
for (let i = 0; i < dataBytes / (64 * K); i++)
  pieces.push(i % 3 === 0 ? randomBytes(64 * K) : i % 3 === 1 ? text : Buffer.alloc(64 * K));
const data = Buffer.concat(pieces);
const key = deriveDatastoreKey(randomBytes(32));

function encodeRate(chunk: number, encrypted: boolean): number {
  const started = performance.now();
  for (let at = 0; at < data.length; at += chunk)
    encodeChunk(data.subarray(at, at + chunk), { key: encrypted ? key : undefined });
  return data.length / M / ((performance.now() - started) / 1000);
}

/** Inserts with `parallel` in flight, then the flush a backup's commit does. */
async function insertRate(chunk: number, parallel: number): Promise<number> {
  const dir = fs.mkdtempSync(path.join(values.dir, 'tern-bench-chunks-'));
  try {
    const ds = await Datastore.create(dir);
    const count = data.length / chunk;
    let next = 0;
    const started = performance.now();
    const worker = async () => {
      for (let n = next++; n < count; n = next++) {
        // Distinct chunks (a counter in each), so every insert writes a file.
        const piece = Buffer.from(data.subarray(n * chunk, (n + 1) * chunk));
        piece.writeUInt32BE(n, 0);
        await ds.chunks.insert(piece);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
    await ds.chunks.flush();
    return data.length / M / ((performance.now() - started) / 1000);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const rows: (string | number)[][] = [];
for (const c of sizes) {
  const read = readAt.get(c)!;
  rows.push([
    `${c / K} KiB`,
    (read / M).toFixed(0),
    (read / dirtied).toFixed(1),
    (read / readAt.get(4 * M)!).toFixed(3),
    Math.round((1024 * 1024 * M) / c).toLocaleString('en'),
    `${((((1024 * 1024 * M) / c) * 32) / M).toFixed(0)} MiB`,
    encodeRate(c, false).toFixed(0),
    encodeRate(c, true).toFixed(0),
    (await insertRate(c, 1)).toFixed(0),
    (await insertRate(c, 4)).toFixed(0),
  ]);
}
console.log(
  `disk ${values.disk} GiB, ${writes} random 4 KiB writes (${(dirtied / M).toFixed(0)} MiB dirtied), granule 64 KiB; ` +
    `${values.data} MiB of mixed data; load ${loadavg()}`,
);
table(
  [
    'chunk',
    'read MiB',
    'x dirtied',
    'x 4 MiB',
    'files/TiB',
    'index/TiB',
    'encode MB/s',
    '+AES MB/s',
    'insert MB/s',
    '4 at once',
  ],
  rows,
);
const best = rows.find((r) => Number(r[3]) <= 0.25);
console.log(
  `figure: smallest read of 1% random 4 KiB writes ≤ ¼ of 4 MiB chunks' at ${best ? best[0] : 'none'} (${best ? best[3] : '-'}x)`,
);
