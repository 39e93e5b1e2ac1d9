/**
 * backup.restore.live: a backup restored as a new VM that runs at once. The host serves the
 * backup's disks and makes the VM's volumes qcow2 overlays on them (agent/backup/live-restore.ts),
 * the VM starts on that host, and QEMU streams the data in underneath the running guest; the
 * task ends when every disk stands alone. The time to a running guest is its first figure.
 *
 * Resumable: every step is idempotent (the host serves again after its own restart, a running
 * VM is not started twice, a stream still running is followed, one already done ends at once).
 * A restore that fails (a damaged chunk the guest needed, a host that could not start it) is
 * undone as a failed creation: the VM is forced off, its volumes removed, and it is forgotten.
 */
import { TernError } from '../../errors.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { act, startVm } from '../vms/power.ts';
import type { BackupDeps } from './deps.ts';
import { bytesText, percentOf, progressText } from './figures.ts';
import { diskIndexOf } from './names.ts';
import { type BackupRestoreParams, removeRestoredVm } from './restore.ts';

const logEveryMs = 5_000;

export function backupLiveRestoreTask(deps: BackupDeps): TaskKind<BackupRestoreParams> {
  return {
    kind: 'backup.restore.live',
    onInterrupt: 'resume',
    run: (ctx, p) => runLiveRestore(deps, ctx, p),
    async cleanup(ctx, p) {
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row) return;
      if (row.state !== 'creating' && row.state !== 'stopped') {
        await ctx.log(`forcing off ${row.name}: its disks are not all restored`);
        await act(deps, p.vmId, 'kill').catch((err: TernError) =>
          ctx.log(`forcing off failed: ${err.message}`),
        );
      }
      await removeRestoredVm(deps, ctx, p, row);
    },
  };
}

async function runLiveRestore(deps: BackupDeps, ctx: TaskContext, p: BackupRestoreParams) {
  const started = Date.now();
  const ds = await deps.datastores.row(p.datastoreId);
  if (!(await deps.backups.find(ds.id, p.sourceVmId, p.backupId)))
    throw new TernError('not_found', `backup ${p.backupId} is no longer in datastore ${ds.name}`);
  let row = await deps.store.row(p.vmId);
  const hostId = row.hostId;
  if (!hostId) throw new TernError('conflict', `VM ${row.name} has no host`);
  const { agent } = await deps.datastores.agentFor(ds, hostId);
  const indexes = p.targets.map((t) => {
    const i = diskIndexOf(t.disk);
    if (i === null) throw new TernError('internal', `backup disk ${t.disk} has no index`);
    return i;
  });
  const total = p.targets.reduce((a, t) => a + t.sizeBytes, 0);
  let runningAfterMs: number | null = null;
  // Asked every time, the VM running or not: after an agent restart it serves the backup again.
  await ctx.step(`serving backup ${p.backupId} from ${ds.name} for ${row.name}`, 1);
  for (const v of p.volumes.filter((v) => v.content === 'uefi-vars'))
    await agent.createVolume(v).catch((err: TernError) => {
      if (err.code !== 'conflict') throw err;
    });
  await agent.backup.prepareLiveRestore(p.vmId, {
    datastore: await deps.datastores.access(ds),
    group: p.sourceVmId,
    id: p.backupId,
    disks: p.targets.map((t) => ({ disk: t.disk, target: t.volume })),
  });
  if (row.state === 'creating' || row.state === 'stopped') {
    await ctx.step('starting it on its restored disks', 2);
    await startVm(deps, ctx, p.vmId, { creating: true });
    runningAfterMs = Date.now() - started;
    row = await deps.store.row(p.vmId);
    if (row.hostId !== hostId)
      throw new TernError(
        'conflict',
        `VM ${row.name} started on another host than the one serving its backup`,
      );
    await ctx.log(`${row.name} runs ${(runningAfterMs / 1000).toFixed(1)} s after the restore began`);
  }
  let lastLog = 0;
  const streamed = await agent.backup.streamLiveRestore(
    p.vmId,
    indexes,
    p.bandwidth,
    (r) => {
      const percent = Math.max(3, percentOf(0, r, total));
      if (Date.now() - lastLog >= logEveryMs) {
        lastLog = Date.now();
        ctx.step(progressText(r, 'streamed'), percent).catch(() => {});
      } else ctx.progress(percent).catch(() => {});
    },
    ctx.signal,
  );
  await ctx.log(`${bytesText(streamed)} streamed in from the backup; the disks stand alone`);
  return { vm: row.name, backup: p.backupId, live: true, runningAfterMs, streamedBytes: streamed };
}
