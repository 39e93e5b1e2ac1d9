/**
 * bench/backup: Tern's backup path against `qemu-img convert`, per chunk size, side by side in
 * one run (issue 16, item 9), to choose DEFAULT_CHUNK_SIZE:
 *
 * - full backup: a qcow2 of --disk MiB (half random, half text-like, every block written) read
 *   over NBD from qemu-nbd by the backup writer into a fresh datastore on --dir, against
 *   `qemu-img convert` of the same disk to a qcow2 on the same file system (then fsynced, as a
 *   backup's chunks are); goal ≥ 0.9x;
 * - incremental: 1% of the disk's 4 KiB blocks rewritten at random under a persistent dirty
 *   bitmap (granularity 64 KiB); bytes read and stored against the bytes dirtied and against
 *   what 4 MiB chunks read and store; goal ≤ ¼ of the 4 MiB figure;
 * - dedup over --days daily backups (the full, then a 1% day each, bitmaps rotated as the agent
 *   does): the disk bytes the backups describe over the bytes the datastore holds;
 * - restore: the last backup written onto a fresh qcow2 through qemu-nbd, MB/s.
 *
 *   node bench/backup.ts [--disk 1024] [--days 10] [--dir /var/tmp]
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeBackup } from '../src/agent/backup/backup-writer.ts';
import { NbdClient } from '../src/agent/backup/nbd/client.ts';
import { BASE_ALLOCATION, dirtyBitmapContext } from '../src/agent/backup/nbd/protocol.ts';
import { serveImage } from '../src/agent/backup/qemu-nbd.ts';
import { restoreDisk } from '../src/agent/backup/restore.ts';
import type { DiskView } from '../src/agent/backup/view.ts';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import type { BackupDiskResult } from '../src/wire/backup.ts';
import { seededRandom } from '../test/seeded-random.ts';
import { loadavg, table } from './report.ts';

const { values } = parseArgs({
  options: {
    disk: { type: 'string', default: '1024' },
    days: { type: 'string', default: '10' },
    dir: { type: 'string', default: '/var/tmp' },
  },
});
const K = 1024;
const M = K * K;
const sizes = [64 * K, 256 * K, 1 * M, 4 * M];
const diskBytes = Number(values.disk) * M;
const days = Number(values.days);
const work = fs.mkdtempSync(path.join(values.dir, 'tern-bench-backup-'));
const disk = path.join(work, 'disk.qcow2');
const run = (cmd: string, ...args: string[]) =>
  execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 });
const mbps = (bytes: number, ms: number) => bytes / M / (ms / 1000);
const duBytes = (dir: string) => Number(run('du', '-sb', dir).split('\t')[0]);

/** The disk's content: every 64 KiB piece unique, half random, half text with its number in it. */
function fillDisk(): void {
  run('qemu-img', 'create', '-q', '-f', 'qcow2', disk, String(diskBytes));
  const text = Buffer.from('INSERT INTO ledger VALUES (42, "Alice", "Bob", 17.00); -- '.repeat(1200));
  const slab = path.join(work, 'slab');
  const slabBytes = 64 * M;
  let piece = 0;
  for (let at = 0; at < diskBytes; at += slabBytes) {
    const parts: Buffer[] = [];
    for (let p = 0; p < slabBytes / (64 * K); p++, piece++) {
      if (piece % 2 === 0) parts.push(randomBytes(64 * K));
      else {
        const t = Buffer.from(text.subarray(0, 64 * K));
        t.write(`piece ${piece}`, 0);
        parts.push(t);
      }
    }
    fs.writeFileSync(slab, Buffer.concat(parts));
    run(
      'qemu-io',
      '-f',
      'qcow2',
      '-c',
      `write -q -s ${slab} ${at} ${Math.min(slabBytes, diskBytes - at)}`,
      disk,
    );
  }
  fs.rmSync(slab);
}

/** 1% of the disk's 4 KiB blocks rewritten at random (random bytes), as a guest would. */
function dirtyOnePercent(seed: number): number {
  const random = seededRandom(seed);
  const blocks = diskBytes / 4096;
  const writes = Math.round(blocks * 0.01);
  const script: string[] = [];
  for (let i = 0; i < writes; i++) {
    const block = Math.floor(random() * blocks);
    script.push(`write -q -P ${(i % 250) + 1} ${block * 4096} 4k`);
  }
  execFileSync('qemu-io', ['-f', 'qcow2', disk], { input: `${script.join('\n')}\nquit\n` });
  return writes * 4096;
}

/** A backup of the disk as a stopped VM's is read: qemu-nbd, read-only, with the bitmap. */
async function backUp(
  ds: Datastore,
  chunkSize: number,
  id: string,
  previous: string | null,
  bitmap: string | null,
) {
  const served = await serveImage(disk, { format: 'qcow2', readOnly: true, ...(bitmap ? { bitmap } : {}) });
  const contexts = bitmap ? [BASE_ALLOCATION, dirtyBitmapContext(bitmap)] : [BASE_ALLOCATION];
  const nbd = await NbdClient.connect(
    { path: served.socket },
    { exportName: served.exportName, metaContexts: contexts },
  );
  const view: DiskView = {
    name: 'disk0',
    size: nbd.size,
    format: 'qcow2',
    bitmapDistrust: bitmap ? null : 'no bitmap yet',
    allocation: () => nbd.extents(BASE_ALLOCATION, 0, nbd.size),
    dirty: () => nbd.extents(dirtyBitmapContext(bitmap!), 0, nbd.size),
    read: (offset, length) => nbd.read(offset, length),
  };
  const started = performance.now();
  try {
    const result = await writeBackup(
      ds,
      {
        datastore: { path: ds.dir, key: null },
        chunkSize,
        group: 'vm',
        id,
        previous,
        bitmap: 'tern-bk-bench',
        disks: [{ name: 'disk0', volume: { pool: 'x', path: 'x' }, format: 'qcow2' }],
        freeze: false,
        bandwidth: 0,
        labels: {},
      },
      { takenAt: new Date().toISOString(), consistency: 'crash', consistencyNote: null, disks: [view] },
      () => {},
      new AbortController().signal,
    );
    return { disk: result.disks[0] as BackupDiskResult, ms: performance.now() - started };
  } finally {
    await nbd.disconnect();
    await served.close();
  }
}

const day = (n: number) => `2026-12-${String(n).padStart(2, '0')}T02-00-00Z`;

try {
  fillDisk();
  // qemu-img convert of the same disk to the same file system, made durable.
  const copy = path.join(work, 'copy.qcow2');
  let started = performance.now();
  run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'qcow2', disk, copy);
  run('sync', copy);
  const convertMs = performance.now() - started;
  fs.rmSync(copy);

  const stores = new Map<number, Datastore>();
  const full = new Map<number, number>();
  for (const c of sizes) {
    const ds = await Datastore.create(path.join(work, `ds-${c / K}k`));
    stores.set(c, ds);
    full.set(c, (await backUp(ds, c, day(1), null, null)).ms);
  }

  // Day 2: 1% random 4 KiB writes under a bitmap; the incremental of each chunk size.
  run('qemu-img', 'bitmap', '--add', '--enable', '-g', '65536', disk, 'd2');
  const dirtied = dirtyOnePercent(2);
  const incr = new Map<number, { disk: BackupDiskResult; ms: number }>();
  for (const c of sizes) incr.set(c, await backUp(stores.get(c)!, c, day(2), day(1), 'd2'));

  // Days 3…: a new bitmap each day, the day's writes, an incremental.
  for (let d = 3; d <= days; d++) {
    run('qemu-img', 'bitmap', '--add', '--enable', '-g', '65536', disk, `d${d}`);
    run('qemu-img', 'bitmap', '--remove', disk, `d${d - 1}`);
    dirtyOnePercent(d);
    for (const c of sizes) await backUp(stores.get(c)!, c, day(d), day(d - 1), `d${d}`);
  }

  const restored = new Map<number, number>();
  for (const c of sizes) {
    const target = path.join(work, 'restore.qcow2');
    run('qemu-img', 'create', '-q', '-f', 'qcow2', target, String(diskBytes));
    started = performance.now();
    await restoreDisk(stores.get(c)!, {
      group: 'vm',
      id: day(days),
      disk: 'disk0',
      file: target,
      format: 'qcow2',
      bandwidth: 0,
      progress: () => {},
    });
    restored.set(c, performance.now() - started);
    fs.rmSync(target);
  }

  const convert = mbps(diskBytes, convertMs);
  const at4 = incr.get(4 * M)!.disk;
  const rows = sizes.map((c) => {
    const i = incr.get(c)!.disk;
    const stored = duBytes(path.join(stores.get(c)!.dir, 'chunks'));
    return [
      `${c / K} KiB`,
      mbps(diskBytes, full.get(c)!).toFixed(0),
      (mbps(diskBytes, full.get(c)!) / convert).toFixed(2),
      (i.readBytes / M).toFixed(1),
      (i.readBytes / dirtied).toFixed(1),
      (i.readBytes / at4.readBytes).toFixed(3),
      (i.newBytes / M).toFixed(1),
      (i.newBytes / at4.newBytes).toFixed(3),
      ((days * diskBytes) / stored).toFixed(2),
      mbps(diskBytes, restored.get(c)!).toFixed(0),
    ];
  });
  console.log(
    `disk ${values.disk} MiB qcow2 (half random, half text), ${(dirtied / M).toFixed(1)} MiB dirtied a day by ` +
      `1% random 4 KiB writes, bitmap granularity 64 KiB, ${days} days; qemu-img convert ${convert.toFixed(0)} MB/s; ` +
      `dir ${values.dir}; ${os.cpus().length} cores; load ${loadavg()}`,
  );
  table(
    [
      'chunk',
      'full MB/s',
      'x convert',
      'incr read MiB',
      'x dirtied',
      'x 4 MiB',
      'incr stored MiB',
      'x 4 MiB',
      `dedup ${days} days`,
      'restore MB/s',
    ],
    rows,
  );
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
