/**
 * Replicating a real VM between two hosts' agents (POST /agent/v1/vms/:id/replicate on the
 * primary's, the stream over mutual TLS straight to the replica's receive route), one tiny
 * guest shared by every case. The guest writes known patterns at known offsets of a qcow2
 * data disk (direct I/O, so QEMU has them when the command returns), and each recovery point,
 * read back from the replica's qcow2 chain with qemu-img, must equal byte for byte what the
 * disk held at the view: an initial point, an incremental sending only the changed 64 KiB
 * granules, the primary's agent SIGKILLed mid-stream (no new point, the next cycle completes),
 * a live migration carrying the replication bitmaps (the next cycle, from the other host,
 * incremental), a stopped VM replicated (its image and the point compared exactly), a wrong
 * ticket refused.
 * Two agents rather than one sending to itself: the receive route admits a host of the
 * cluster, and a host's own certificate is what the stream is checked against.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TernError } from '../src/errors.ts';
import type { AgentClient } from '../src/manager/hosts/agent-client.ts';
import { followRoute } from '../src/manager/hosts/agent-stream.ts';
import { callAgent } from '../src/manager/hosts/agent-transport.ts';
import type { AgentVm } from '../src/wire/agent.ts';
import { agentRoutes } from '../src/wire/agent-routes.ts';
import type { Host } from '../src/wire/host.ts';
import type {
  ReplicaStatus,
  ReplicateVmReport,
  ReplicateVmRequest,
  ReplicateVmResult,
} from '../src/wire/replication.ts';
import type { Template } from '../src/wire/template.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { type Cluster, guestDir, shellOn, startCluster, type TestHost } from './harness.ts';

const K = 1024;
const M = 1024 * K;
const DATA_SIZE = 64 * M;
const GRANULE = 64 * K;

let c: Cluster;
/** The primary's agent and host (a), the replica's (b). */
let A: AgentClient;
let B: AgentClient;
let primary: TestHost;
let replicaHost: TestHost;
let receiveUrl: string;
let spec: VmSpec;
const id = randomUUID();
const rid = randomUUID();
const prefix = `tern-rp-${rid.slice(0, 8)}`;
const dataVolume = { pool: 'local', path: `vms/${id}/data.qcow2` };
const replicaDisks = [{ name: 'disk1', sizeBytes: DATA_SIZE }];
/** What the data disk holds, as the guest's writes made it. */
const disk = Buffer.alloc(DATA_SIZE);

before(async () => {
  c = await startCluster('replication-send', { hosts: ['a', 'b'] });
  A = await c.agentClient('a');
  B = await c.agentClient('b');
  [primary, replicaHost] = c.hosts;
  const hostB = await c.api.request<Host>('GET', '/api/v1/hosts/b');
  receiveUrl = `${hostB.address}/agent/v1/replicas/${rid}/receive`;
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
    metaData: `instance-id: ${id}\nlocal-hostname: primary\n`,
  });
  spec = {
    id,
    name: 'primary',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 256,
    disks: [
      { volume: { pool: 'local', path: `${dir}/disk0.qcow2` }, format: 'qcow2', readonly: false, slot: 0 },
      { volume: dataVolume, format: 'qcow2', readonly: false, slot: 1 },
    ],
    nics: [{ mac: '52:54:00:72:70:01', network: { mode: 'user' } }],
    boot: t.boot!,
    seed: { pool: 'local', path: `${dir}/seed.iso` },
  };
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

/** The guest writes `tag\n` repeated over `length` bytes at `offset` of its data disk, direct and flushed. */
async function guestWrite(tag: string, offset: number, length: number): Promise<void> {
  await shellOn(
    primary,
    id,
    `yes ${tag} | head -c ${length} > /tmp/p && dd if=/tmp/p of=/dev/vdb bs=4096 seek=${offset / 4096} conv=notrunc,fsync oflag=direct 2>/dev/null && echo W''ROTE`,
    /WROTE/,
  );
  const line = Buffer.from(`${tag}\n`);
  for (let at = 0; at < length; at += line.length)
    line.copy(disk, offset + at, 0, Math.min(line.length, length - at));
}

/** Random bytes (not compressible) written by the guest; what they were is only known from the image. */
async function guestWriteRandom(offset: number, length: number): Promise<void> {
  await shellOn(
    primary,
    id,
    `head -c ${length} /dev/urandom > /tmp/r && dd if=/tmp/r of=/dev/vdb bs=4096 seek=${offset / 4096} conv=notrunc,fsync oflag=direct 2>/dev/null && echo W''ROTE`,
    /WROTE/,
  );
}

/** Prepares `point` on `base` on the replica's host; answers the replicate request for it. */
async function prepare(point: string, base: string | null, over: Partial<ReplicateVmRequest> = {}) {
  const call = () =>
    callAgent(
      B.transport,
      agentRoutes.prepareReceive,
      { params: { id: rid }, body: { pool: 'local', point, base, disks: replicaDisks } },
      120_000,
    );
  // A stream cut by a killed sender ends on the replica's host once it sees the connection gone.
  const until = Date.now() + 30_000;
  let reply = await call().catch((e: TernError) => e);
  while (reply instanceof TernError && /is being received/.test(reply.message) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 200));
    reply = await call().catch((e: TernError) => e);
  }
  if (reply instanceof TernError) throw reply;
  const req: ReplicateVmRequest = {
    replication: rid,
    point,
    previous: base,
    bitmap: prefix,
    disks: [{ name: 'disk1', volume: dataVolume, format: 'qcow2' }],
    freeze: true,
    bandwidth: 0,
    target: { url: receiveUrl, ticket: reply.ticket, ca: null, resume: reply.resume },
    ...over,
  };
  return req;
}

function replicate(
  req: ReplicateVmRequest,
  onReport: (l: ReplicateVmReport) => void = () => {},
): Promise<ReplicateVmResult> {
  const stream = {
    maxLine: 1024 * 1024,
    silenceMs: 30_000,
    signal: AbortSignal.timeout(300_000),
    during: 'the replication',
  };
  return followRoute(A.transport, agentRoutes.replicateVm, { params: { id }, body: req }, stream, (line) => {
    if (line.type === 'error')
      throw TernError.fromBody(
        { error: { code: line.code, message: line.message } },
        'the replication failed',
      );
    if (line.type === 'done') return line.result;
    onReport(line);
    return undefined;
  });
}

function status(): Promise<ReplicaStatus> {
  return callAgent(
    B.transport,
    agentRoutes.replicaStatus,
    { params: { id: rid }, body: { pool: 'local' } },
    60_000,
  );
}

/** An image as the guest reads it (its backing chain included), raw. */
function imageBytes(file: string): Buffer {
  const out = path.join(c.dir, `read-${randomUUID()}.raw`);
  execFileSync('qemu-img', ['convert', '-U', '-O', 'raw', file, out]);
  try {
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

const pointImage = (point: string) =>
  imageBytes(path.join(replicaHost.pool, 'replicas', rid, 'disk1', `${point}.qcow2`));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function assertSameBytes(actual: Buffer, expected: Buffer, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (actual.equals(expected)) return;
  let at = 0;
  while (actual[at] === expected[at]) at++;
  assert.fail(`${what}: first difference at byte ${at}`);
}

const P1 = '2026-12-07T18-00-00Z';
const P2 = '2026-12-07T18-00-30Z';
const P3 = '2026-12-07T18-01-00Z';
const P4 = '2026-12-07T18-01-30Z';
const P4M = '2026-12-07T18-01-45Z';
const P5 = '2026-12-07T18-02-00Z';
const saved = new Map<string, Buffer>();

test('an initial point of a running VM is the disk whole, frozen for the instant', async () => {
  await A.runVm(spec);
  await waitVm(answering, 'answering');
  await guestWrite('first', 0, M);
  await guestWrite('second', 8 * M + 4 * K, 4 * K);
  await guestWrite('third', 40 * M, 256 * K);
  const lines: ReplicateVmReport[] = [];
  const r = await replicate(await prepare(P1, null), (l) => lines.push(l));
  assert.equal(r.point, P1);
  assert.equal(r.consistency, 'application', JSON.stringify(r));
  const d = r.disks[0]!;
  assert.equal(d.mode, 'full');
  assert.equal(d.fullReason, null);
  assert.ok(d.readBytes >= M + 4 * K + 256 * K && d.readBytes <= 2 * M, `read ${d.readBytes}`);
  assert.ok(lines.some((l) => l.type === 'progress' && l.item === 'disk1'));
  assert.deepEqual(
    (await status()).points.map((p) => p.id),
    [P1],
  );
  assertSameBytes(pointImage(P1), disk, P1);
  saved.set(P1, Buffer.from(disk));
});

test('an incremental sends only the 64 KiB granules the guest wrote since', async () => {
  await guestWrite('fourth', 8 * M + 4 * K, 4 * K);
  await guestWrite('fifth', 20 * M, 4 * K);
  const r = await replicate(await prepare(P2, P1));
  const d = r.disks[0]!;
  assert.equal(d.mode, 'incremental', JSON.stringify(r));
  assert.equal(d.dirtyBytes, 2 * GRANULE);
  assert.equal(d.readBytes, 2 * GRANULE);
  // Two granules of a repeated line, compressed, with their frame headers: far below 128 KiB.
  assert.ok(d.sentBytes < 2 * GRANULE, `sent ${d.sentBytes} bytes`);
  assertSameBytes(pointImage(P2), disk, P2);
  assertSameBytes(pointImage(P1), saved.get(P1)!, `${P1} after ${P2}`);
  saved.set(P2, Buffer.from(disk));
});

test("the primary's agent SIGKILLed mid-stream: the replica gets no new point, the next cycle completes", async () => {
  await guestWriteRandom(12 * M, 2 * M);
  let killed: Promise<void> | null = null;
  // Slow on purpose (256 KiB/s of incompressible bytes), so the kill lands mid-stream.
  const running = replicate(await prepare(P3, P2, { bandwidth: 256 * K }), (l) => {
    if (!killed && l.type === 'progress' && l.item === 'disk1' && l.doneBytes > 0)
      killed = primary.agent.kill();
  });
  await assert.rejects(running, (e: TernError) => e.code === 'unavailable');
  assert.ok(killed, 'the agent was killed during the stream');
  await killed;
  await primary.start();
  const broken = await status();
  assert.deepEqual(
    broken.points.map((p) => p.id),
    [P1, P2],
  );
  await waitVm(answering, 'answering after the agent restart');

  // P3's rotation happened; its bitmap is merged in: the 2 MiB from before, and the granule after.
  await guestWrite('sixth', 30 * M, 4 * K);
  const r = await replicate(await prepare(P4, P2));
  const d = r.disks[0]!;
  assert.equal(d.mode, 'incremental', JSON.stringify(r));
  assert.equal(d.dirtyBytes, 2 * M + GRANULE);
  assert.deepEqual(
    (await status()).points.map((p) => p.id),
    [P1, P2, P4],
  );
  assertSameBytes(pointImage(P2), saved.get(P2)!, `${P2} after the kill`);
  // The random bytes are known only from the point (the stopped VM's case compares them with
  // the primary's image); everything else must be what the guest wrote.
  const p4 = pointImage(P4);
  p4.copy(disk, 12 * M, 12 * M, 14 * M);
  assertSameBytes(p4, disk, P4);
});

test('a live migration with the disks mirrored carries the replication bitmaps: the next cycle, from the other host, is incremental', async () => {
  // The guest's kernel and initrd where the spec names them, in b's own pool.
  for (const [ref, file] of [
    [spec.boot!.kernel, 'vmlinuz'],
    [spec.boot!.initrd!, 'initrd.img'],
  ] as const)
    await B.importVolume({ volume: ref, sourcePath: path.join(guestDir(), file), format: 'raw' });
  await guestWrite('migrated', 5 * M, 4 * K);
  const sizes = await Promise.all(
    [spec.disks[0]!.volume, dataVolume, spec.seed!].map((v) => A.volumeInfo(v)),
  );
  const incoming = await B.prepareIncoming({
    spec,
    mode: 'live',
    storage: 'mirror',
    listenHost: '127.0.0.1',
    create: [
      { volume: spec.disks[0]!.volume, format: 'qcow2', sizeBytes: sizes[0]!.virtualBytes },
      { volume: dataVolume, format: 'qcow2', sizeBytes: sizes[1]!.virtualBytes },
      { volume: spec.seed!, format: 'raw', sizeBytes: sizes[2]!.virtualBytes },
    ],
  });
  const mig = {
    mode: 'live',
    uri: incoming.uri,
    nbd: incoming.nbd!,
    downtimeLimitMs: 300,
    bandwidthMiBps: 0,
  } as const;
  await A.migrate(id, { ...mig, autoConverge: true, timeoutS: 300 }, () => {}, AbortSignal.timeout(300_000));
  await B.finishIncoming(id);
  await A.releaseMigrated(id);
  // From now on the VM runs on b, the replica's own host: it sends to itself.
  A = B;
  primary = replicaHost;
  await waitVm(answering, 'answering on b');
  const r = await replicate(await prepare(P4M, P4));
  const d = r.disks[0]!;
  assert.equal(d.mode, 'incremental', JSON.stringify(r));
  assert.equal(d.dirtyBytes, GRANULE);
  assertSameBytes(pointImage(P4M), disk, P4M);
});

test("a stopped VM is replicated from its image: the newest point is the primary's disk exactly", async () => {
  await guestWrite('seventh', 50 * M, 8 * K);
  await A.act(id, 'powerdown');
  await waitVm((vm) => vm.state === 'stopped', 'stopped');
  const r = await replicate(await prepare(P5, P4M));
  assert.equal(r.consistencyNote, 'stopped VM: consistent');
  const d = r.disks[0]!;
  assert.equal(d.mode, 'incremental', JSON.stringify(r));
  assert.equal(d.dirtyBytes, GRANULE);
  const primaryDisk = imageBytes(path.join(primary.pool, dataVolume.path));
  assert.equal(sha(pointImage(P5)), sha(primaryDisk));
});

test('a stream with a wrong ticket is refused and commits nothing', async () => {
  const req = await prepare('2026-12-07T18-02-30Z', P5);
  const wrong = { ...req, target: { ...req.target, ticket: 'x'.repeat(43) } };
  await assert.rejects(
    replicate(wrong),
    (e: TernError) => e.code === 'unauthorized' || e.code === 'forbidden',
  );
  assert.deepEqual(
    (await status()).points.map((p) => p.id),
    [P1, P2, P4, P4M, P5],
  );
});
