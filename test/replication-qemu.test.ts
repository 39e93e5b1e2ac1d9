/**
 * Replication with real QEMU, end to end through the manager, one tiny guest shared by every
 * case. The guest counts without pause, writing each count at the start of its data disk with
 * direct I/O and a flush, so QEMU holds every count the guest has written. The counter proves
 * what each step keeps:
 *   - every 30 s a recovery point, and each holds at least the count the guest had written when
 *     its cycle began (the replica trails by no more than the interval and one transfer);
 *   - a test failover boots a copy of a point on an isolated network with exactly that point's
 *     count, while cycles go on, and leaves the replica's points as they were;
 *   - a planned failover ends with the replica running and holding the very last count the
 *     primary wrote before its shutdown; the reverse replication's first cycle sends only what
 *     changed since the common point;
 *   - an unplanned failover, the primary's host lost, is refused unforced, and forced runs the
 *     newest point, holding every count written before its cycle began.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TernError } from '../src/errors.ts';
import { type Replication, replicationRoutes } from '../src/wire/api/replication.ts';
import { replicationFailoverRoutes } from '../src/wire/api/replication-failover.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuGone, qemuPids, shellOn, startCluster, type TestHost } from './harness.ts';

let c: Cluster;
let primary: Vm;
let rep: Replication;

const answering = (v: Vm) => v.state === 'running' && v.guest.agent === 'responding';
const hostNamed = (name: string | null): TestHost => {
  const h = c.hosts.find((x) => x.name === name);
  assert.ok(h, `host ${name}`);
  return h;
};

/** The count the guest of VM `vm` last wrote whole (it writes the disk, then renames /tmp/n to /tmp/c). */
async function guestCount(vm: Vm): Promise<number> {
  // The first count may still be on its way to the disk: the guest waits for it (bounded by shellOn).
  const out = await shellOn(
    hostNamed(vm.host),
    vm.id,
    "while [ ! -f /tmp/c ]; do sleep 0.1; done; cat /tmp/c; echo C''NT",
    /(\d{15})\s+CNT/,
  );
  return Number(/(\d{15})\s+CNT/.exec(out)![1]);
}

/** The count at the start of the data disk as a guest reads it (a VM just booted: no counting). */
async function diskCountInGuest(vm: Vm): Promise<number> {
  const out = await shellOn(
    hostNamed(vm.host),
    vm.id,
    "dd if=/dev/vdb bs=16 count=1 2>/dev/null; echo D''SK",
    /(\d{15})\s+DSK/,
  );
  return Number(/(\d{15})\s+DSK/.exec(out)![1]);
}

/** The count at the start of a qcow2 file (read through its backing chain) on a host. */
function fileCount(host: TestHost, volumePath: string): number {
  const raw = path.join(c.dir, `count-${process.hrtime.bigint()}.raw`);
  execFileSync('qemu-img', [
    'dd',
    '-U',
    '-f',
    'qcow2',
    '-O',
    'raw',
    'bs=4096',
    'count=1',
    `if=${path.join(host.pool, volumePath)}`,
    `of=${raw}`,
  ]);
  const text = fs.readFileSync(raw).subarray(0, 15).toString();
  fs.rmSync(raw);
  assert.match(text, /^\d{15}$/, `a count at the start of ${volumePath}`);
  return Number(text);
}

const pointFile = (r: Replication, point: string) => `replicas/${r.id}/disk1/${point}.qcow2`;

/** Runs a cycle now; one the scheduler started first is waited for, then ours runs. */
async function cycle(ref = 'counter'): Promise<Task> {
  for (;;) {
    const submitted = await c.api
      .call(replicationRoutes.cycle, { params: { replication: ref } })
      .catch((err: TernError) => err);
    if (submitted instanceof Error) {
      if (submitted.code !== 'locked') throw submitted;
      const busy = String((submitted.details as { task?: string } | undefined)?.task);
      await c.api.waitTask(busy, (t) => !['queued', 'running'].includes(t.state), 180_000, 'ended');
      continue;
    }
    const done = await c.api.settle(submitted.task);
    assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
    return done;
  }
}

/** Starts the guest of `vm` counting (see the top of the file). */
async function startCounting(vm: Vm): Promise<void> {
  await shellOn(
    hostNamed(vm.host),
    vm.id,
    // The shell's own `${i:-0}`, not a template.
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a shell expansion
    "(i=$(dd if=/dev/vdb bs=15 count=1 2>/dev/null | sed 's/^0*//'); i=${i:-0}; while :; do i=$((i+1)); printf '%015d\\n' $i > /tmp/n; dd if=/tmp/n of=/dev/vdb bs=4096 count=1 conv=sync,notrunc,fsync oflag=direct 2>/dev/null && mv /tmp/n /tmp/c; done) >/dev/null 2>&1 & echo S''TARTED",
    /STARTED/,
  );
}

/** Waits on the event stream for a cycle of `r` other than `not` to succeed. */
function nextCycle(r: Replication, not: string): Promise<Task> {
  return c.api.waitTaskOn(
    `replication:${r.id}`,
    async () => {
      const now = await c.api.call(replicationRoutes.show, { params: { replication: r.id } });
      return now.lastTask
        ? c.api.request<Task>('GET', `/api/v1/tasks/${now.lastTask}`)
        : ({ id: '', kind: 'replication.cycle', state: 'queued' } as Task);
    },
    (t) => t.kind === 'replication.cycle' && t.state === 'succeeded' && t.id !== not && t.id !== '',
    180_000,
    'a cycle succeeded',
  );
}

before(async () => {
  // The tiny guest boots its kernel from a file: that file must be where the replica can reach
  // it (the shared pool); the VM's disks are each host's own. Each host has its own network
  // namespace, as separate machines do: a test failover's network has its gateway on every host.
  c = await startCluster('replication-qemu', { hosts: ['a', 'b'], shared: true, isolated: true });
  const t = await c.api.task('POST', '/api/v1/vms', {
    name: 'counter',
    template: 'tiny',
    pool: 'local',
    extraDisksGiB: [0.25],
    start: true,
  });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  primary = await c.api.waitVm('counter', answering, 120_000, 'answering');
  // Counts without pause: each count whole at offset 0 of the data disk, direct and flushed.
  await startCounting(primary);
  const first = await guestCount(primary);
  assert.ok((await guestCount(primary)) > first, 'the guest counts');
});

after(async () => {
  await c?.stop();
});

test('every 30 s a recovery point, each holding every count written before its cycle began', async () => {
  const target = c.hosts.find((h) => h.name !== primary.host)!;
  rep = await c.api.call(replicationRoutes.create, {
    body: { vm: 'counter', host: target.name, pool: 'local', every: '30s', points: 24 },
  });
  // The scheduler makes the initial copy at once, then a point every 30 s from the newest.
  const first = await nextCycle(rep, '');
  await nextCycle(rep, first.id);
  const r = await c.api.call(replicationRoutes.show, { params: { replication: 'counter' } });
  const points = (await c.api.call(replicationRoutes.points, { params: { replication: 'counter' } })).items;
  assert.ok(points.length >= 2, `${points.length} points`);
  const gap = (Date.parse(points[1]!.takenAt) - Date.parse(points[0]!.takenAt)) / 1000;
  assert.ok(gap >= 29 && gap <= 45, `the second point ${gap} s after the first`);
  assert.ok((r.rpo.lagSeconds ?? 99) <= 45, `lag ${r.rpo.lagSeconds} s`);

  // A cycle now: its point holds at least the count the guest had written before it began.
  const before = await guestCount(primary);
  const t = await cycle();
  const point = (t.result as { point: string }).point;
  const held = fileCount(target, pointFile(rep, point));
  const afterwards = await guestCount(primary);
  assert.ok(
    held >= before && held <= afterwards + 1,
    `point ${point} holds ${held}: ${before} ≤ it ≤ ${afterwards}`,
  );
  assert.equal((t.result as { mode: string }).mode, 'incremental');
  console.log(
    `replication: point ${point} holds count ${held}; the guest had written ${before} when its cycle began`,
  );
});

test('a test failover boots a point on an isolated network while cycles go on, leaving the points as they were', async () => {
  const points = (await c.api.call(replicationRoutes.points, { params: { replication: 'counter' } })).items;
  const tested = points.at(-1)!;
  const target = hostNamed(rep.host);
  const count = fileCount(target, pointFile(rep, tested.id));
  const { task } = await c.api.call(replicationFailoverRoutes.testFailover, {
    params: { replication: 'counter' },
    body: { point: tested.id },
  });
  const started = await c.api.settle(task);
  assert.equal(started.state, 'succeeded', JSON.stringify(started.error));
  const copy = await c.api.waitVm('counter-test', answering, 120_000, 'answering');
  assert.equal(copy.host, rep.host);
  assert.equal(await diskCountInGuest(copy), count, 'the copy holds the point it was made from');
  // Replication goes on: a cycle commits while the copy runs.
  await cycle();
  const stop = await c.api.call(replicationFailoverRoutes.testStop, { params: { replication: 'counter' } });
  assert.equal((await c.api.settle(stop.task)).state, 'succeeded');
  await assert.rejects(c.api.request('GET', '/api/v1/vms/counter-test'), /counter-test/);
  assert.equal(fileCount(target, pointFile(rep, tested.id)), count, "the tested point's bytes stayed");
  const still = (await c.api.call(replicationRoutes.points, { params: { replication: 'counter' } })).items;
  assert.ok(
    still.some((p) => p.id === tested.id),
    'the tested point is still there',
  );
});

test('a planned failover loses no count; reverse replication then sends only what changed', async () => {
  const { task } = await c.api.call(replicationFailoverRoutes.failover, {
    params: { replication: 'counter' },
    body: { planned: true, shutdownTimeoutSeconds: 60, force: true },
  });
  const done = await c.api.settle(task);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  // The primary's last count, from its disk as the shutdown left it.
  const old = await c.api.request<Vm>('GET', `/api/v1/vms/${primary.id}`);
  assert.equal(old.state, 'stopped');
  const last = fileCount(hostNamed(primary.host), old.disks[1]!.volume.path);
  const replica = await c.api.waitVm(rep.replicaVmId, answering, 180_000, 'answering');
  assert.equal(replica.host, rep.host);
  assert.equal(await diskCountInGuest(replica), last, 'the replica runs with the last count written');
  const shown = await c.api.call(replicationRoutes.show, { params: { replication: rep.id } });
  assert.equal(shown.state, 'failed-over');
  console.log(`replication: planned failover kept count ${last}`);

  const reverse = (await c.api.call(replicationRoutes.list)).items.find((x) => x.reverseOf === rep.id);
  assert.ok(reverse, 'reverse replication was started');
  assert.equal(reverse.host, primary.host);
  // Its first point is the common one, the old primary's disks adopted; its first cycle (the
  // scheduler's, at once) sends what the new primary wrote since.
  const common = (await c.api.call(replicationRoutes.points, { params: { replication: rep.id } })).items.at(
    -1,
  )!;
  await nextCycle(reverse, '');
  const reversePoints = (await c.api.call(replicationRoutes.points, { params: { replication: reverse.id } }))
    .items;
  const p = reversePoints.find((x) => x.id > common.id);
  assert.ok(p, `a reverse point after the common point ${common.id}: ${reversePoints.map((x) => x.id)}`);
  const size = p.disks.reduce((n, d) => n + d.sizeBytes, 0);
  console.log(
    `replication: the first reverse cycle sent ${p.sentBytes} bytes of ${size} (${p.disks.map((d) => `${d.name} ${d.mode}`).join(', ')})`,
  );
  assert.ok(
    p.disks.every((d) => d.mode === 'incremental'),
    JSON.stringify(p.disks),
  );
  assert.ok(p.sentBytes < size / 20, `${p.sentBytes} bytes sent of ${size}`);
});

test('an unplanned failover, the primary host lost, runs the newest point: every count written before its cycle began', async () => {
  // The VM now runs as counter-replica, replicating back to its first host (the reverse).
  const reverse = (await c.api.call(replicationRoutes.list)).items.find((x) => x.reverseOf === rep.id)!;
  const running = await c.api.request<Vm>('GET', `/api/v1/vms/${rep.replicaVmId}`);
  await startCounting(running);
  const before = await guestCount(running);
  const t = await cycle(reverse.id);
  const point = (t.result as { point: string }).point;
  const held = fileCount(hostNamed(reverse.host), `replicas/${reverse.id}/disk1/${point}.qcow2`);
  assert.ok(held >= before, `point ${point} holds ${held}, the guest had written ${before}`);

  // Its host is lost: its agent and the VM's QEMU killed. Nothing confirms the VM stopped, so
  // only a forced failover goes ahead.
  const lost = hostNamed(running.host);
  await lost.agent.kill();
  for (const pid of qemuPids(running.id)) process.kill(pid, 'SIGKILL');
  await qemuGone(running.id);
  const refused = await c.api
    .call(replicationFailoverRoutes.failover, { params: { replication: reverse.id }, body: {} })
    .catch((err: TernError) => err);
  assert.ok(refused instanceof Error && refused.code === 'conflict', String(refused));
  const { task } = await c.api.call(replicationFailoverRoutes.failover, {
    params: { replication: reverse.id },
    body: { point: 'latest', force: true },
  });
  const done = await c.api.settle(task);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  const back = await c.api.waitVm(primary.id, answering, 180_000, 'answering');
  assert.equal(back.host, reverse.host);
  assert.equal(await diskCountInGuest(back), held, 'the VM runs the newest point, its count exactly');
  console.log(
    `replication: unplanned failover ran point ${point} with count ${held} (${before} written before its cycle)`,
  );
});
