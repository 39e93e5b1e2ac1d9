/**
 * Backing up a real VM through its agent (POST /agent/v1/vms/:id/backup), one tiny guest shared
 * by every case: the guest writes known patterns at known offsets of a qcow2 data disk (direct
 * I/O, so QEMU has them when the command returns), and each backup, read back chunk by chunk
 * from the datastore, must equal byte for byte what the disk held. A full backup, then
 * incrementals that read only the chunks the guest dirtied (bytes counted): while running,
 * while stopped (qemu-nbd), after a stop and start; after QEMU is SIGKILLed the bitmap is
 * refused, the disk read whole and still deduplicated; and a backup taken while the guest
 * writes without pause is one instant of the disk.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Datastore } from '../src/backup/datastore/datastore.ts';
import type { TernError } from '../src/errors.ts';
import type { AgentClient } from '../src/manager/hosts/agent-client.ts';
import type { AgentVm } from '../src/wire/agent.ts';
import type {
  BackupDiskResult,
  BackupVmReport,
  BackupVmRequest,
  BackupVmResult,
} from '../src/wire/backup.ts';
import type { Template } from '../src/wire/template.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { type Cluster, guestDir, shellOn, startCluster, type TestHost } from './harness.ts';

const K = 1024;
const M = 1024 * K;
const DATA_SIZE = 64 * M;
const CHUNK = 256 * K;
const GRANULE = 64 * K;
const PREFIX = 'tern-bk-0badcafe';

let c: Cluster;
/** The agent of the host the VM runs on, and that host. */
let A: AgentClient;
let host: TestHost;
let spec: VmSpec;
let dsDir: string;
const id = randomUUID();
const dataVolume = { pool: 'local', path: `vms/${id}/data.qcow2` };
/** What the data disk holds, as the guest's writes made it. */
const disk = Buffer.alloc(DATA_SIZE);

before(async () => {
  c = await startCluster('backup-vm', { hosts: ['a', 'b'] });
  A = await c.agentClient('a');
  host = c.hosts[0];
  const t = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  const dir = `vms/${id}`;
  await A.createVolume({
    volume: { pool: 'local', path: `${dir}/disk0.qcow2` },
    format: 'qcow2',
    backing: t.disk,
  });
  await A.createVolume({ volume: dataVolume, format: 'qcow2', sizeBytes: DATA_SIZE });
  await A.createSeed({
    volume: { pool: 'local', path: `${dir}/seed.iso` },
    metaData: `instance-id: ${id}\nlocal-hostname: saved\n`,
  });
  spec = {
    id,
    name: 'saved',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 256,
    disks: [
      { volume: { pool: 'local', path: `${dir}/disk0.qcow2` }, format: 'qcow2', readonly: false, slot: 0 },
      { volume: dataVolume, format: 'qcow2', readonly: false, slot: 1 },
    ],
    nics: [{ mac: '52:54:00:62:6b:76', network: { mode: 'user' } }],
    boot: t.boot!,
    seed: { pool: 'local', path: `${dir}/seed.iso` },
  };
  dsDir = path.join(c.dir, 'datastore');
  await Datastore.create(dsDir);
});

after(async () => {
  await A?.act(id, 'kill').catch(() => {});
  await c?.stop();
});

async function waitVm(until: (vm: AgentVm) => boolean, what: string, timeoutMs = 120_000): Promise<AgentVm> {
  const stop = new AbortController();
  try {
    return await new Promise<AgentVm>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`VM not ${what} within ${timeoutMs} ms`)), timeoutMs);
      stop.signal.addEventListener('abort', () => clearTimeout(timer));
      A.follow(
        (e) => {
          if (e.type === 'vm' && e.vm.id === id && until(e.vm)) resolve(e.vm);
        },
        () => {},
        stop.signal,
      ).catch(reject);
    });
  } finally {
    stop.abort();
  }
}

const answering = (vm: AgentVm) => vm.state === 'running' && vm.guest.agent === 'responding';

async function boot(): Promise<void> {
  await A.runVm(spec);
  await waitVm(answering, 'answering');
  // The data disk is the guest's second virtio disk.
  await shellOn(host, id, `cat /sys/block/vdb/size; echo S''Z`, /\d+\s+SZ/);
}

/** `tag\n` repeated over `length` bytes: what the guest writes at `offset`. */
function pattern(tag: string, length: number): Buffer {
  const line = Buffer.from(`${tag}\n`);
  const out = Buffer.alloc(length);
  for (let at = 0; at < length; at += line.length) line.copy(out, at);
  return out;
}

/**
 * The guest writes `tag`'s pattern at `offset` of its data disk, with direct I/O and a flush:
 * without the flush, QEMU may hold a new cluster's qcow2 metadata in memory, and a kill loses
 * the write (as a crash loses what a guest never flushed).
 */
async function guestWrite(tag: string, offset: number, length: number): Promise<void> {
  assert.equal(offset % 4096, 0);
  await shellOn(
    host,
    id,
    `yes ${tag} | head -c ${length} > /tmp/p && dd if=/tmp/p of=/dev/vdb bs=4096 seek=${offset / 4096} conv=notrunc,fsync oflag=direct 2>/dev/null && echo W''ROTE`,
    /WROTE/,
  );
  pattern(tag, length).copy(disk, offset);
}

function request(backupId: string, previous: string | null): BackupVmRequest {
  return {
    datastore: { path: dsDir, key: null },
    chunkSize: CHUNK,
    group: id,
    id: backupId,
    previous,
    bitmap: PREFIX,
    disks: [
      { name: 'disk0', volume: spec.disks[0].volume, format: 'qcow2' },
      { name: 'disk1', volume: dataVolume, format: 'qcow2' },
    ],
    freeze: true,
    bandwidth: 0,
    labels: {},
  };
}

async function backUp(
  backupId: string,
  previous: string | null,
): Promise<{ result: BackupVmResult; data: BackupDiskResult; lines: BackupVmReport[] }> {
  const lines: BackupVmReport[] = [];
  const result = await A.backup.backupVm(
    id,
    request(backupId, previous),
    (l) => lines.push(l),
    AbortSignal.timeout(300_000),
  );
  const data = result.disks.find((d) => d.name === 'disk1')!;
  return { result, data, lines };
}

/** A disk of a backup, put back together from the datastore's chunks. */
async function restored(backupId: string, name = 'disk1'): Promise<Buffer> {
  const ds = await Datastore.open(dsDir);
  const index = await ds.readIndex(await ds.readManifest(id, backupId), name);
  const parts: Buffer[] = [];
  for (let i = 0; i < index.count; i++) parts.push(await ds.readChunk(index, i));
  return Buffer.concat(parts);
}

function assertSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (actual.equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  assert.fail(`${what}: first difference at byte ${at}`);
}

/** The data disk's bitmaps, as qemu-img sees them in the stopped image. */
function qcowBitmaps(): string[] {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '--output=json', path.join(host.pool, dataVolume.path)], {
      encoding: 'utf8',
    }),
  );
  return (info['format-specific'].data.bitmaps ?? []).map((b: { name: string }) => b.name);
}

const saved = new Map<string, Buffer>();

test('a full backup of a running VM holds exactly what its disks held, frozen for the instant', async () => {
  await boot();
  await guestWrite('first', 0, M);
  await guestWrite('second', 8 * M + 4 * K, 4 * K);
  await guestWrite('third', 40 * M, 256 * K);
  const { result, data, lines } = await backUp('b1', null);
  assert.equal(result.consistency, 'application', JSON.stringify(result));
  assert.equal(result.consistencyNote, null);
  assert.equal(data.mode, 'full');
  assert.equal(data.fullReason, null);
  assert.equal(data.sizeBytes, DATA_SIZE);
  // Only chunks that hold data are read: 4 + 1 + 1.
  assert.equal(data.readBytes, 6 * CHUNK);
  assert.ok(lines.some((l) => l.type === 'progress' && l.item === 'disk1'));
  assertSameBytes(await restored('b1'), disk, 'b1');
  saved.set('b1', Buffer.from(disk));
  // The boot disk comes back whole too: an ext4 superblock where it belongs.
  const boot0 = await restored('b1', 'disk0');
  assert.equal(boot0.readUInt16LE(1024 + 56), 0xef53);
});

test('an incremental reads only the chunks the guest dirtied since', async () => {
  await guestWrite('fourth', 8 * M + 4 * K, 4 * K);
  await guestWrite('fifth', 20 * M, 64 * K);
  const { data, result } = await backUp('b2', 'b1');
  assert.equal(data.mode, 'incremental', JSON.stringify(result));
  assert.equal(data.dirtyBytes, 2 * GRANULE);
  assert.equal(data.readBytes, 2 * CHUNK);
  assert.equal(result.disks.find((d) => d.name === 'disk0')!.mode, 'incremental');
  assertSameBytes(await restored('b2'), disk, 'b2');
  assertSameBytes(await restored('b1'), saved.get('b1')!, 'b1 after b2');
  saved.set('b2', Buffer.from(disk));
});

test('a stopped VM is backed up from its images, incrementally, and a start keeps the bitmap', async () => {
  await guestWrite('sixth', 30 * M, 4 * K);
  await A.act(id, 'powerdown');
  await waitVm((vm) => vm.state === 'stopped', 'stopped');
  const stopped = await backUp('b3', 'b2');
  assert.equal(stopped.result.consistencyNote, 'stopped VM: consistent');
  assert.equal(stopped.data.mode, 'incremental', JSON.stringify(stopped.result));
  assert.equal(stopped.data.readBytes, CHUNK);
  assertSameBytes(await restored('b3'), disk, 'b3');
  // The rotation left only the bitmap named after the newest backup in the image.
  assert.deepEqual(qcowBitmaps(), [`${PREFIX}-b3`]);

  await boot();
  await guestWrite('seventh', 50 * M, 8 * K);
  const started = await backUp('b4', 'b3');
  assert.equal(started.data.mode, 'incremental', JSON.stringify(started.result));
  assert.equal(started.data.readBytes, CHUNK);
  assertSameBytes(await restored('b4'), disk, 'b4');
});

test('after QEMU is killed its bitmaps are refused: the disk is read whole, says why, and dedups', async () => {
  // A clean stop writes b4's bitmap into the image; the next QEMU marks it in use, and a kill
  // leaves it so: inconsistent.
  await A.act(id, 'powerdown');
  await waitVm((vm) => vm.state === 'stopped', 'stopped');
  assert.deepEqual(qcowBitmaps(), [`${PREFIX}-b4`]);
  await boot();
  await guestWrite('eighth', 60 * M, 4 * K);
  const pid = Number(fs.readFileSync(path.join(host.stateDir, 'run', id, 'qemu.pid'), 'utf8'));
  process.kill(pid, 'SIGKILL');
  await waitVm((vm) => vm.state === 'crashed', 'crashed');
  await boot();
  const { data, result, lines } = await backUp('b5', 'b4');
  assert.equal(data.mode, 'full');
  assert.match(data.fullReason ?? '', /tern-bk-0badcafe-b4 is inconsistent/);
  assert.ok(lines.some((l) => l.type === 'log' && /disk1: read whole: .*inconsistent/.test(l.message)));
  // Everything with data was read; only the chunk the guest wrote since b4 is new.
  assert.equal(data.readBytes, 10 * CHUNK);
  assert.equal(data.newChunks, 1, JSON.stringify(result));
  assertSameBytes(await restored('b5'), disk, 'b5');
  // And the next backup is incremental again.
  await guestWrite('ninth', 10 * M, 4 * K);
  const next = await backUp('b6', 'b5');
  assert.equal(next.data.mode, 'incremental', JSON.stringify(next.result));
  assert.equal(next.data.readBytes, CHUNK);
  assertSameBytes(await restored('b6'), disk, 'b6');
});

test('a backup taken while the guest writes without pause is one instant of the disk', async () => {
  // Passes over 4 MiB at 32 MiB, 64 KiB direct writes in order, each pass its own pattern: an
  // instant of that region is pass p up to some block and pass p-1 after it.
  const REGION = 32 * M;
  const BLOCKS = 64;
  await shellOn(
    host,
    id,
    `(p=0; while [ ! -e /tmp/stop ]; do p=$((p+1)); yes pass$p | head -c ${BLOCKS * 64 * K} > /tmp/w; dd if=/tmp/w of=/dev/vdb bs=65536 seek=${REGION / (64 * K)} conv=notrunc oflag=direct 2>/dev/null; done; echo $p > /tmp/ended) & echo STA''RTED`,
    /STARTED/,
  );
  let result: BackupVmResult;
  let last = 0;
  try {
    // Let a few passes run before and during the backup.
    await shellOn(host, id, `sleep 2; echo SL''EPT`, /SLEPT/);
    ({ result } = await backUp('b7', 'b6'));
  } finally {
    const out = await shellOn(
      host,
      id,
      `touch /tmp/stop; while [ ! -e /tmp/ended ]; do sleep 0.2; done; echo STO''PPED $(cat /tmp/ended) PASSES`,
      /STOPPED \d+ PASSES/,
      60_000,
    );
    last = Number(/STOPPED (\d+) PASSES/.exec(out)![1]);
  }
  assert.equal(result.disks.find((d) => d.name === 'disk1')!.mode, 'incremental');
  const bytes = await restored('b7');
  const passes: number[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const block = bytes.subarray(REGION + b * 64 * K, REGION + (b + 1) * 64 * K);
    // Zeros: no pass has reached it yet.
    if (block.equals(Buffer.alloc(block.length))) {
      passes.push(0);
      continue;
    }
    const tag = /(?:^|\n)pass(\d+)\n/.exec(block.toString('latin1', 0, 32));
    assert.ok(tag, `block ${b} holds a pass's pattern`);
    // The pattern runs on across blocks: block b of a pass is that pass's text from b * 64 KiB.
    const whole = pattern(`pass${tag[1]}`, BLOCKS * 64 * K).subarray(b * 64 * K, (b + 1) * 64 * K);
    assert.ok(block.equals(whole), `block ${b} is whole`);
    passes.push(Number(tag[1]));
  }
  const newest = Math.max(...passes);
  const lead = passes.findIndex((p) => p !== newest);
  const expected = passes.map((_, b) => (lead === -1 || b < lead ? newest : newest - 1));
  assert.deepEqual(passes, expected, 'one instant: pass p up to a block, p-1 after');
  // The rest of the disk is as the guest left it before.
  const rest = Buffer.from(bytes);
  disk.copy(rest, REGION, REGION, REGION + BLOCKS * 64 * K);
  assertSameBytes(rest, disk, 'b7 outside the written region');
  // Each pass is written whole before the loop looks again: the region ends as the last one.
  pattern(`pass${last}`, BLOCKS * 64 * K).copy(disk, REGION);
});

test('a live migration with the disks mirrored carries the bitmaps: the next backup, on the other host, is incremental', async () => {
  const B = await c.agentClient('b');
  const hostB = c.hosts[1];
  // The guest's kernel and initrd where the spec names them, in b's own pool.
  for (const [ref, file] of [
    [spec.boot!.kernel, 'vmlinuz'],
    [spec.boot!.initrd!, 'initrd.img'],
  ] as const)
    await B.importVolume({ volume: ref, sourcePath: path.join(guestDir(), file), format: 'raw' });
  await guestWrite('tenth', 5 * M, 4 * K);
  const sizes = await Promise.all([spec.disks[0].volume, dataVolume, spec.seed!].map((v) => A.volumeInfo(v)));
  const incoming = await B.prepareIncoming({
    spec,
    mode: 'live',
    storage: 'mirror',
    listenHost: '127.0.0.1',
    create: [
      { volume: spec.disks[0].volume, format: 'qcow2', sizeBytes: sizes[0]!.virtualBytes },
      { volume: dataVolume, format: 'qcow2', sizeBytes: sizes[1]!.virtualBytes },
      { volume: spec.seed!, format: 'raw', sizeBytes: sizes[2]!.virtualBytes },
    ],
  });
  await A.migrate(
    id,
    {
      mode: 'live',
      uri: incoming.uri,
      nbd: incoming.nbd!,
      downtimeLimitMs: 300,
      bandwidthMiBps: 0,
      autoConverge: true,
      timeoutS: 300,
    },
    () => {},
    AbortSignal.timeout(300_000),
  );
  await B.finishIncoming(id);
  await A.releaseMigrated(id);
  A = B;
  host = hostB;
  await waitVm(answering, 'answering on b');
  await guestWrite('eleventh', 45 * M, 4 * K);
  const { data, result } = await backUp('b8', 'b7');
  assert.equal(data.mode, 'incremental', JSON.stringify(result));
  // Only what the guest wrote since b7's instant: one chunk before the migration, one after,
  // and the passes of the previous case's writer that came after that instant (at most its 4 MiB).
  assert.ok(data.readBytes >= 2 * CHUNK && data.readBytes <= 2 * CHUNK + 4 * M, String(data.readBytes));
  assertSameBytes(await restored('b8'), disk, 'b8');
});

test('an agent killed during a backup leaves no backup; the next one clears what it left in QEMU and builds on the last good one', async () => {
  await guestWrite('twelfth', 12 * M, 2 * M);
  let killed: Promise<void> | null = null;
  // Slow on purpose (256 KiB/s), so the kill lands while chunks are read.
  const running = A.backup.backupVm(
    id,
    { ...request('b9', 'b8'), bandwidth: 256 * K },
    (l) => {
      if (!killed && l.type === 'progress' && l.item === 'disk1' && l.doneBytes > 0)
        killed = host.agent.kill();
    },
    AbortSignal.timeout(300_000),
  );
  await assert.rejects(running, (e: TernError) => e.code === 'unavailable');
  assert.ok(killed, 'the agent was killed during the backup');
  await killed;
  await host.start();
  await assert.rejects(
    Datastore.open(dsDir).then((ds) => ds.readManifest(id, 'b9')),
    /not found/,
  );
  await waitVm(answering, 'answering after the agent restart');

  await guestWrite('thirteenth', 14 * M + 64 * K, 4 * K);
  const { data, result } = await backUp('b10', 'b8');
  assert.equal(data.mode, 'incremental', JSON.stringify(result));
  // b9's rotation happened; its bitmap is merged in: 2 MiB from before, the chunk after.
  assert.equal(data.readBytes, 8 * CHUNK + CHUNK);
  assertSameBytes(await restored('b10'), disk, 'b10');
  // The guest still writes through to its disk (the device is back on it): a later backup sees it.
  await guestWrite('fourteenth', 0, 4 * K);
  const after2 = await backUp('b11', 'b10');
  assert.equal(after2.data.readBytes, CHUNK);
  assertSameBytes(await restored('b11'), disk, 'b11');
});

test('a paused VM is backed up without asking its guest to freeze, and says so', async () => {
  await A.act(id, 'pause');
  const started = Date.now();
  const { data, result } = await backUp('b12', 'b11');
  assert.ok(Date.now() - started < 20_000, 'no wait for a freeze the guest cannot answer');
  assert.equal(result.consistency, 'crash');
  assert.equal(result.consistencyNote, 'the VM is paused: not frozen');
  assert.equal(data.mode, 'incremental');
  assert.equal(data.readBytes, 0);
  assertSameBytes(await restored('b12'), disk, 'b12');
  await A.act(id, 'resume');
});
