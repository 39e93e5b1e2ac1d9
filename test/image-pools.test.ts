/**
 * Image pools on real guests: VMs boot pristine from a non-persistent cache; a maintenance
 * version is changed by its one VM, tested, promoted by rolling reboot with at most one VM of
 * two down at a time, and rolled back the same way. The guest's boot count, kept on its disk,
 * shows which image a VM booted: each boot adds one line to the image it writes to.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { ImagePool } from '../src/wire/image-pool.ts';
import type { Vm } from '../src/wire/vm.ts';
import { type Cluster, startCluster } from './harness.ts';

let c: Cluster;
before(async () => {
  c = await startCluster('pools');
});
after(async () => {
  await c?.stop();
});

const answering = (v: Vm) => v.state === 'running' && v.guest.agent === 'responding';

/** The boot number of the VM's latest boot, from its console. */
async function lastBoot(name: string): Promise<number> {
  const { text } = await c.api.request<{ text: string }>('GET', `/api/v1/vms/${name}/console?bytes=400000`);
  const all = [...text.matchAll(/TERN-GUEST-READY hostname=\S+ instance=\S+ boot=(\d+)/g)];
  return Number(all[all.length - 1]?.[1] ?? 0);
}

/** Runs `fn` while recording, from the event stream, the most pool VMs not running at once. */
async function maxDown(names: string[], fn: () => Promise<void>): Promise<number> {
  const state = new Map<string, string>();
  for (const n of names) state.set(n, (await c.api.request<Vm>('GET', `/api/v1/vms/${n}`)).state);
  let worst = 0;
  const stop = new AbortController();
  const watching = c.api
    .events(
      '',
      (e: ManagerEvent) => {
        if (e.type !== 'vm' || !names.includes(e.vm.name)) return;
        state.set(e.vm.name, e.vm.state);
        worst = Math.max(worst, [...state.values()].filter((s) => s !== 'running').length);
      },
      stop.signal,
    )
    .catch(() => {});
  try {
    await fn();
  } finally {
    stop.abort();
    await watching;
  }
  return worst;
}

test('a non-persistent pool boots pristine every time', async () => {
  const made = await c.api.task('POST', '/api/v1/image-pools', {
    name: 'desk',
    template: 'tiny',
    size: 2,
    maxUnavailablePercent: 50,
    start: true,
  });
  assert.equal(made.state, 'succeeded', JSON.stringify(made.error));
  for (const n of ['desk-1', 'desk-2']) await c.api.waitVm(n, answering, 120_000, 'up');
  assert.equal(await lastBoot('desk-1'), 1);
  assert.equal((await c.api.task('POST', '/api/v1/vms/desk-1/shutdown')).state, 'succeeded');
  assert.equal((await c.api.task('POST', '/api/v1/vms/desk-1/start')).state, 'succeeded');
  await c.api.waitVm('desk-1', answering, 120_000, 'up again');
  assert.equal(await lastBoot('desk-1'), 1, 'the cache was discarded: a first boot again');
});

test('a maintenance version is promoted by rolling reboot, and rolled back', async () => {
  const opened = await c.api.task('POST', '/api/v1/image-pools/desk/versions');
  assert.equal(opened.state, 'succeeded', JSON.stringify(opened.error));
  assert.deepEqual(opened.result, { version: 2, maintenanceVm: 'desk-v2' });
  // The one VM that writes to version 2: its boot lands in the version itself.
  assert.equal((await c.api.task('POST', '/api/v1/vms/desk-v2/start')).state, 'succeeded');
  await c.api.waitVm('desk-v2', answering, 120_000, 'up');
  assert.equal((await c.api.task('POST', '/api/v1/vms/desk-v2/shutdown')).state, 'succeeded');
  const early = await c.api.raw('POST', '/api/v1/image-pools/desk/versions/2/promote');
  assert.equal(early.status, 409, 'only a tested version is promoted');
  assert.equal((await c.api.task('POST', '/api/v1/image-pools/desk/versions/2/test')).state, 'succeeded');
  assert.equal((await c.api.raw('GET', '/api/v1/vms/desk-v2')).status, 404, 'the maintenance VM is gone');

  let promoted = null as null | { state: string; error: unknown };
  const down = await maxDown(['desk-1', 'desk-2'], async () => {
    promoted = await c.api.task('POST', '/api/v1/image-pools/desk/versions/2/promote');
  });
  assert.equal(promoted!.state, 'succeeded', JSON.stringify(promoted!.error));
  assert.equal(down, 1, 'never more than 50% (one of two) down at once');
  for (const n of ['desk-1', 'desk-2']) {
    await c.api.waitVm(n, answering, 120_000, 'up on version 2');
    assert.equal(await lastBoot(n), 2, `${n} booted the image with the maintenance boot in it`);
  }
  let pool = await c.api.request<ImagePool>('GET', '/api/v1/image-pools/desk');
  assert.equal(pool.production, 2);
  assert.equal(pool.previous, 1);
  assert.deepEqual(
    pool.vms.map((v) => v.version),
    [2, 2],
  );
  // Refused before any task: the rollback target and production are never deletable.
  const target = await c.api.raw('DELETE', '/api/v1/image-pools/desk/versions/1');
  assert.equal(target.status, 409);
  assert.match(target.body.error?.message ?? '', /rollback target/);

  const back = await c.api.task('POST', '/api/v1/image-pools/desk/rollback');
  assert.equal(back.state, 'succeeded', JSON.stringify(back.error));
  for (const n of ['desk-1', 'desk-2']) {
    await c.api.waitVm(n, answering, 120_000, 'up on version 1');
    assert.equal(await lastBoot(n), 1, `${n} is back on the first image`);
  }
  pool = await c.api.request<ImagePool>('GET', '/api/v1/image-pools/desk');
  assert.equal(pool.production, 1);
  const inUse = await c.api.raw('DELETE', '/api/v1/image-pools/desk/versions/1');
  assert.equal(inUse.status, 409);
  assert.match(inUse.body.error?.message ?? '', /production/);
});
