/** Disk operations on a real guest: online and offline growth, snapshots and revert. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { headerBytes, parseQcow2Header } from '../src/agent/storage/qcow2-layout.ts';
import type { Alert } from '../src/wire/alert.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, qemuPids, shellOn, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('disks');
});
after(async () => {
  await c?.stop();
});

const GiB = 1024 ** 3;
const answering = (v: Vm) => v.state === 'running' && v.guest.agent === 'responding';
const virtualSize = (vm: Vm, i: number) =>
  (
    JSON.parse(
      execFileSync('qemu-img', ['info', '-U', '--output=json', path.join(c.pool, vm.disks[i].volume.path)], {
        encoding: 'utf8',
      }),
    ) as { 'virtual-size': number }
  )['virtual-size'];
const readyLines = async (n: number) => {
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/d1/console?bytes=400000');
  return text.match(new RegExp(`TERN-GUEST-READY hostname=d1 instance=\\S+ boot=${n}\\b`, 'g'))?.length ?? 0;
};

test('a running VM grows its disk online', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', {
    name: 'd1',
    template: 'tiny',
    extraDisksGiB: [0.25],
    start: true,
  });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  await c.api.waitVm('d1', answering, 120_000, 'up');
  const r = await c.api.task('POST', '/api/v1/vms/d1/disks/1/resize', { sizeGiB: 0.5 });
  assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/d1');
  assert.equal(vm.state, 'running');
  assert.equal(vm.disks[1].sizeBytes, GiB / 2);
  assert.equal(virtualSize(vm, 1), GiB / 2);
  const shrink = await c.api.raw('POST', '/api/v1/vms/d1/disks/1/resize', {
    body: '{"sizeGiB":0.125}',
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(shrink.status, 409, 'refused before a task');
  assert.match(shrink.body.error?.message ?? '', /only grow/);
});

test('a running snapshot freezes the guest filesystems; revert brings the disk back', async () => {
  const d1 = await c.api.request<Vm>('GET', '/api/v1/vms/d1');
  const frozenSeen: boolean[] = [];
  const watch = new AbortController();
  await new Promise<void>((open, fail) => {
    c.api
      .events(`vm=${d1.id}`, (e) => e.type === 'vm' && frozenSeen.push(e.vm.guest.frozen), watch.signal, open)
      .catch((err) => watch.signal.aborted || fail(err));
  });
  try {
    const snap = await c.api.task('POST', '/api/v1/vms/d1/snapshots', { name: 'before' });
    assert.equal(snap.state, 'succeeded', JSON.stringify(snap.error));
    assert.equal((snap.result as { consistency: string }).consistency, 'filesystem-frozen');
    await c.api.waitVm('d1', (v) => !v.guest.frozen, 10_000, 'thawed after the snapshot');
  } finally {
    watch.abort();
  }
  assert.ok(frozenSeen.includes(true), 'the guest was shown frozen while the snapshot was taken');
  const dup = await c.api.task('POST', '/api/v1/vms/d1/snapshots', { name: 'before' });
  assert.equal(dup.state, 'failed');
  const bad = await c.api.raw('POST', '/api/v1/vms/d1/snapshots', {
    body: '{"name":"../x"}',
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(bad.status, 400);
  const list = await c.api.request<{ items: { name: string }[] }>('GET', '/api/v1/vms/d1/snapshots');
  assert.deepEqual(
    list.items.map((s) => s.name),
    ['before'],
  );

  // A second boot writes boot=2 to the guest's disk after the snapshot was taken.
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/shutdown')).state, 'succeeded');
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/start')).state, 'succeeded');
  await c.api.waitVm('d1', answering, 120_000, 'up again');
  assert.equal(await readyLines(2), 1);
  const running = await c.api.task('POST', '/api/v1/vms/d1/snapshots/before/revert');
  assert.equal(running.state, 'failed');
  assert.match(running.error?.message ?? '', /stop it to revert/);
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/shutdown')).state, 'succeeded');

  const revert = await c.api.task('POST', '/api/v1/vms/d1/snapshots/before/revert');
  assert.equal(revert.state, 'succeeded', JSON.stringify(revert.error));
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/start')).state, 'succeeded');
  await c.api.waitVm('d1', answering, 120_000, 'up after the revert');
  // The disk is back at one boot, so this boot is the second one again, not the third.
  assert.equal(await readyLines(2), 2);
  assert.equal(await readyLines(3), 0);
});

test('a stopped VM grows its disk offline and deletes snapshots', async () => {
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/shutdown')).state, 'succeeded');
  const r = await c.api.task('POST', '/api/v1/vms/d1/disks/0/resize', { sizeGiB: 1 });
  assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
  assert.equal(virtualSize(await c.api.request<Vm>('GET', '/api/v1/vms/d1'), 0), GiB);
  const del = await c.api.task('DELETE', '/api/v1/vms/d1/snapshots/before');
  assert.equal(del.state, 'succeeded', JSON.stringify(del.error));
  const list = await c.api.request<{ items: unknown[] }>('GET', '/api/v1/vms/d1/snapshots');
  assert.deepEqual(list.items, []);
  const missing = await c.api.task('DELETE', '/api/v1/vms/d1/snapshots/before');
  assert.equal(missing.state, 'failed');
});

test('disks are hot-plugged into and out of a running VM, and the guest sees them', async () => {
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/start')).state, 'succeeded');
  const up = await c.api.waitVm('d1', (v) => answering(v) && v.guest.disks.length > 0, 120_000, 'up');
  const before = up.guest.disks.length;
  const add = await c.api.task('POST', '/api/v1/vms/d1/disks', { sizeGiB: 0.125 });
  assert.equal(add.state, 'succeeded', JSON.stringify(add.error));
  const added = await c.api.waitVm(
    'd1',
    (v) => v.guest.disks.length === before + 1,
    60_000,
    'seeing the new disk',
  );
  assert.equal(added.disks.length, 3);
  assert.equal(added.disks[2].sizeBytes, GiB / 8);
  const file = path.join(c.pool, added.disks[2].volume.path);
  assert.equal(virtualSize(added, 2), GiB / 8);

  const remove = await c.api.task('DELETE', '/api/v1/vms/d1/disks/2');
  assert.equal(remove.state, 'succeeded', JSON.stringify(remove.error));
  const removed = await c.api.waitVm(
    'd1',
    (v) => v.guest.disks.length === before,
    60_000,
    'without the disk',
  );
  assert.equal(removed.disks.length, 2);
  assert.equal(removed.state, 'running');
  assert.throws(() => execFileSync('qemu-img', ['info', file], { stdio: 'ignore' }), 'its volume is deleted');
  const boot = await c.api.task('DELETE', '/api/v1/vms/d1/disks/0');
  assert.equal(boot.state, 'failed');
  assert.match(boot.error?.message ?? '', /boot disk/);
});

test('an all-in-one Tern killed while a snapshot holds the guest frozen: the task ends and the guest is thawed', async () => {
  const d1 = await c.api.waitVm('d1', answering, 120_000, 'up');
  const watch = new AbortController();
  let frozen!: Promise<void>;
  await new Promise<void>((open, fail) => {
    frozen = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the guest was never shown frozen')), 60_000);
      watch.signal.addEventListener('abort', () => clearTimeout(timer));
      c.api
        .events(`vm=${d1.id}`, (e) => e.type === 'vm' && e.vm.guest.frozen && resolve(), watch.signal, open)
        .catch((err) => {
          if (watch.signal.aborted) return;
          fail(err);
          reject(err);
        });
    });
  });
  const { task } = await c.api.request<{ task: Task }>('POST', '/api/v1/vms/d1/snapshots', { name: 'cut' });
  try {
    await frozen;
  } finally {
    // Manager and agent die together, as the one process of `tern up` does.
    c.manager.signal('SIGKILL');
    c.agent.signal('SIGKILL');
    watch.abort();
  }
  await Promise.all([c.manager.exited, c.agent.exited]);
  await c.startManager();
  await c.startAgent();
  const ended = await c.api.waitTask(
    task.id,
    (t) => t.state === 'failed' || t.state === 'succeeded',
    120_000,
    'ended after the restart',
  );
  assert.notEqual(ended.state, 'running');
  await c.api.waitVm('d1', (v) => answering(v) && !v.guest.frozen, 60_000, 'answering and thawed');
  await shellOn(c.hosts[0], d1.id, 'echo x > /thawed && sync && echo wrote | tr a-z A-Z', /WROTE/);
  // The next snapshot freezes the guest again: it is not silently crash-consistent.
  const next = await c.api.task('POST', '/api/v1/vms/d1/snapshots', { name: 'after-the-kill' });
  assert.equal(next.state, 'succeeded', JSON.stringify(next.error));
  assert.equal((next.result as { consistency: string }).consistency, 'filesystem-frozen');
});

test('a disk cut short is refused before start, saying what is wrong', async () => {
  const t = await c.api.task('POST', '/api/v1/vms', { name: 'cut', template: 'tiny' });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/cut');
  fs.truncateSync(path.join(c.pool, vm.disks[0].volume.path), 64 * 1024);
  const start = await c.api.task('POST', '/api/v1/vms/cut/start');
  assert.equal(start.state, 'failed');
  assert.match(start.error?.message ?? '', /disk 0 .* of VM cut is damaged: it is cut short/);
  assert.equal((await c.api.request<Vm>('GET', '/api/v1/vms/cut')).state, 'stopped');
  assert.deepEqual(qemuPids(vm.id), []);
});

/** Points every data cluster the first L2 table of a qcow2 file maps at a misaligned offset. */
function misalignFirstL2Table(file: string): number {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(headerBytes);
    fs.readSync(fd, head, 0, headerBytes, 0);
    const h = parseQcow2Header(head);
    assert.ok(typeof h !== 'string', String(h));
    const l1 = Buffer.alloc(8);
    fs.readSync(fd, l1, 0, 8, h.l1.offset);
    const l2Offset = Number(l1.readBigUInt64BE(0) & 0x00ff_ffff_ffff_fe00n);
    assert.ok(l2Offset > 0, 'the overlay maps data of its first GiB');
    const l2 = Buffer.alloc(h.clusterBytes);
    fs.readSync(fd, l2, 0, h.clusterBytes, l2Offset);
    let changed = 0;
    for (let at = 0; at < l2.length; at += 8) {
      const entry = l2.readBigUInt64BE(at);
      if ((entry & 0x00ff_ffff_ffff_fe00n) === 0n) continue;
      l2.writeBigUInt64BE(entry + 0x200n, at);
      changed++;
    }
    fs.writeSync(fd, l2, 0, l2.length, l2Offset);
    return changed;
  } finally {
    fs.closeSync(fd);
  }
}

test('QEMU finding a disk corrupt while the guest runs raises a critical alert; the next start is refused', async () => {
  assert.equal((await c.api.task('POST', '/api/v1/vms/d1/shutdown')).state, 'succeeded');
  const d1 = await c.api.request<Vm>('GET', '/api/v1/vms/d1');
  const file = path.join(c.pool, d1.disks[0].volume.path);
  // Damage deeper than the cheap check before start reads: the guest's own reads find it.
  assert.ok(misalignFirstL2Table(file) > 0);
  const watch = new AbortController();
  let raised!: Promise<Alert>;
  await new Promise<void>((open, fail) => {
    raised = new Promise<Alert>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no corrupt-disk alert within 60 s')), 60_000);
      watch.signal.addEventListener('abort', () => clearTimeout(timer));
      c.api
        .events(
          '',
          (e) => {
            if (e.type === 'alert' && e.alert.id === `vm:${d1.id}:corrupt` && !e.alert.clearedAt)
              resolve(e.alert);
          },
          watch.signal,
          open,
        )
        .catch((err) => {
          if (watch.signal.aborted) return;
          fail(err);
          reject(err);
        });
    });
  });
  try {
    assert.equal((await c.api.task('POST', '/api/v1/vms/d1/start')).state, 'succeeded');
    const vm = await c.api.waitVm(
      'd1',
      (v) => /^disk image corrupt: disk 0 /.test(v.stateReason ?? ''),
      60_000,
      'reported with a corrupt disk',
    );
    assert.equal(vm.state, 'running');
    assert.equal((await raised).severity, 'critical');
  } finally {
    watch.abort();
  }
  const stop = await c.api.task('POST', '/api/v1/vms/d1/stop');
  assert.equal(stop.state, 'succeeded', JSON.stringify(stop.error));
  // QEMU marked the image corrupt in its header: the check before start sees it.
  const again = await c.api.task('POST', '/api/v1/vms/d1/start');
  assert.equal(again.state, 'failed');
  assert.match(again.error?.message ?? '', /QEMU marked it corrupt/);
});
