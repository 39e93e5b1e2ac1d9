/**
 * bench/live-restore: how long until a VM restored from a backup runs, live (the VM starts on
 * overlays over the backup served by its host, the data streams in underneath) against the
 * baseline of a whole restore then a start, for VMs whose data disk grows. The goal: a live
 * restore runs its guest in the same short time whatever the disk's size (≤ 60 s).
 *
 * Each VM is the tiny template plus a data disk of the given size, half of it written with a byte
 * pattern on the host (data every restore has to write; it deduplicates in the datastore, which
 * keeps the backup quick), backed up once into a datastore.
 *
 *   node bench/live-restore.ts [--sizes 1,2] (GiB) [--stream-mib 0] (the stream's limit, MiB/s per disk)
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { startCluster } from '../test/harness.ts';
import { loadavg, table } from './report.ts';

const { values } = parseArgs({
  options: { sizes: { type: 'string', default: '1,2' }, 'stream-mib': { type: 'string', default: '0' } },
});
const sizes = values.sizes.split(',').map(Number);
/** The live restores' stream limit (MiB/s per disk; 0: none). */
const streamBytesPerS = Number(values['stream-mib']) * 1024 ** 2;
const GiB = 1024 ** 3;
const sec = (ms: number) => (ms / 1000).toFixed(1);

const c = await startCluster('bench-live');
const ok = (t: Task) => {
  if (t.state !== 'succeeded') throw new Error(`${t.kind} ${t.state}: ${JSON.stringify(t.error)}`);
  return t;
};
/** Submits a restore and times it to the VM's guest agent answering. */
async function restore(vm: string, backup: string, name: string, live: boolean) {
  const t0 = performance.now();
  const body = live ? { name, live: true, bandwidth: streamBytesPerS } : { name, start: true };
  const { task } = await c.api.request<{ task: Task }>(
    'POST',
    `/api/v1/backups/${vm}/${backup}/restore`,
    body,
  );
  // Timed when it happens, not when the task ends: the guest may answer long before.
  const answered = c.api
    .waitVm(
      name,
      (v) => v.state === 'running' && v.guest.agent === 'responding',
      600_000,
      'its guest answering',
    )
    .then(() => performance.now() - t0);
  const done = ok(await c.api.settle(task));
  const guestMs = await answered;
  const taskMs = Date.parse(done.finishedAt!) - Date.parse(done.startedAt!);
  const running = (done.result as { runningAfterMs?: number }).runningAfterMs ?? null;
  return { guestMs, taskMs, running };
}

try {
  await c.api.request('POST', '/api/v1/backup/datastores', {
    name: 'ds',
    path: path.join(c.dir, 'datastore'),
  });
  const rows: (string | number)[][] = [];
  const figures: string[] = [];
  for (const size of sizes) {
    const name = `v${size}`;
    ok(
      await c.api.settle(
        (await c.api.request<{ task: Task }>('POST', '/api/v1/vms', { template: 'tiny', name })).task,
      ),
    );
    ok(await c.api.task('POST', `/api/v1/vms/${name}/disks`, { sizeGiB: size }));
    const vm = await c.api.request<Vm>('GET', `/api/v1/vms/${name}`);
    const data = path.join(c.pool, vm.disks[1]!.volume.path);
    // Half the disk written: 64 MiB pieces, every other one, each its own byte.
    for (let at = 0; at < size * GiB; at += 128 * 1024 ** 2)
      execFileSync('qemu-io', [
        '-f',
        'qcow2',
        '-c',
        `write -P ${(Math.floor(at / 2 ** 20) % 251) + 1} ${at} 64M`,
        data,
      ]);
    const backedUp = ok(await c.api.task('POST', '/api/v1/backups', { vm: name, datastore: 'ds' }));
    const backup = (backedUp.result as { backup: string }).backup;
    const whole = await restore(name, backup, `${name}-whole`, false);
    const live = await restore(name, backup, `${name}-live`, true);
    rows.push([
      `${size} GiB`,
      sec(whole.guestMs),
      live.running === null ? '-' : sec(live.running),
      sec(live.guestMs),
      sec(live.taskMs),
      (whole.guestMs / live.guestMs).toFixed(1),
    ]);
    figures.push(`${size} GiB: guest answering ${sec(live.guestMs)} s live, ${sec(whole.guestMs)} s whole`);
    for (const v of [`${name}-whole`, `${name}-live`])
      await c.api.task('DELETE', `/api/v1/vms/${v}?force=true`);
  }
  console.log(
    `load average ${loadavg()}; live streams limited to ${values['stream-mib']} MiB/s per disk (0: none)`,
  );
  table(
    [
      'data disk',
      'whole restore + start: guest answers (s)',
      'live: VM runs (s)',
      'live: guest answers (s)',
      'live: all streamed (s)',
      'whole / live',
    ],
    rows,
  );
  console.log(`live restore (goal ≤ 60 s whatever the size): ${figures.join('; ')}`);
} finally {
  await c.stop();
}
