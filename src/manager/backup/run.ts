/**
 * backup.run: one VM backed up into one datastore by the host it runs on (running or
 * stopped). The manager names the backup, the backup it builds on (the newest it recorded)
 * and the bitmap; the host decides incremental or full from what it can prove and says why.
 * The inventory records the backup only once the host answered its manifest committed.
 * Interrupted (manager or agent killed) or failed, the task fails and its cleanup forgets
 * whatever the host wrote of it, so the datastore holds no backup the inventory does not know
 * and the next backup simply builds on the last recorded one.
 */
import { TernError } from '../../errors.ts';
import type { BackupVmResult } from '../../wire/backup.ts';
import { now } from '../db/database.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';
import { bytesText, figuresOf, modeOf, percentOf, progressText } from './figures.ts';
import { backupDisks, bitmapPrefix } from './names.ts';
import { restoredInPlaceAt } from './restore.ts';

export interface BackupRunParams {
  vmId: string;
  datastoreId: string;
  /** Chosen at submission (names.ts nextBackupId), so a cleanup knows what to forget. */
  backupId: string;
  freeze: boolean;
  bandwidth: number;
  jobId: string | null;
}

/** How long a failed backup's cleanup waits for the host that wrote it. */
const hostWaitMs = 120_000;

/** How often the step (and so the task log) says bytes, speed and ETA. */
const logEveryMs = 5_000;

export function backupRunTask(deps: BackupDeps): TaskKind<BackupRunParams> {
  return {
    kind: 'backup.run',
    onInterrupt: 'fail',
    run: (ctx, p) => runBackup(deps, ctx, p),
    async cleanup(ctx, p, err) {
      if (refusedBeforeHost.has(err)) return;
      // Recorded means finished: nothing to undo.
      if (await deps.backups.find(p.datastoreId, p.vmId, p.backupId)) return;
      const ds = await deps.datastores.row(p.datastoreId).catch(() => null);
      const vm = await deps.store.row(p.vmId).catch(() => null);
      if (!ds) return;
      const { hostId, agent } = await deps.datastores.agentFor(ds, vm?.hostId ?? null);
      // A host gone mid-backup (its agent killed, the host down) may have committed it since:
      // it is forgotten once the host is back, within a bound; past it the task says so.
      await deps.hosts.whenReported(hostId, hostWaitMs, undefined, (name) =>
        ctx.step(`waiting for host ${name} to remove what it wrote of backup ${p.backupId}`),
      );
      await agent.backup.forgetBackup(await deps.datastores.access(ds), p.vmId, p.backupId);
      await ctx.log(`removed what the host wrote of backup ${p.backupId}`);
    },
  };
}

/**
 * Errors of this process's runs raised before the host was asked anything: their cleanup has
 * nothing to remove. (After a restart an interrupted run is not among them: it is cleaned up.)
 */
const refusedBeforeHost = new WeakSet<object>();

/** Backs up one VM; also a step of a backup job. Resolves with what the inventory recorded. */
export async function runBackup(deps: BackupDeps, ctx: TaskContext, p: BackupRunParams) {
  const startedAt = now();
  const { row, spec, disks, ds, agent, previous } = await prepare(deps, ctx, p).catch((err: unknown) => {
    if (typeof err === 'object' && err !== null) refusedBeforeHost.add(err);
    throw err;
  });
  await ctx.step(
    `backing up ${disks.length} disk(s) of ${row.name} into ${ds.name}${previous ? ` (after ${previous})` : ''}`,
    1,
  );
  let lastLog = 0;
  const result: BackupVmResult = await agent.backup.backupVm(
    p.vmId,
    {
      datastore: await deps.datastores.access(ds),
      chunkSize: ds.chunkSize,
      group: p.vmId,
      id: p.backupId,
      previous,
      bitmap: bitmapPrefix(ds.id),
      disks,
      freeze: p.freeze,
      bandwidth: p.bandwidth,
      labels: { vm: row.name, ...(p.jobId ? { job: p.jobId } : {}) },
    },
    (r) => {
      // Progress is shown, never awaited: a slow database must not stall the host's stream.
      if (r.type === 'log') ctx.log(r.message).catch(() => {});
      else if (r.type === 'progress') {
        const percent = percentOf(0, r, r.totalBytes);
        if (Date.now() - lastLog >= logEveryMs) {
          lastLog = Date.now();
          // The step shows bytes, speed and ETA where the CLI's progress bar shows the step.
          ctx.step(progressText(r), percent).catch(() => {});
        } else ctx.progress(percent).catch(() => {});
      }
    },
    ctx.signal,
  );
  for (const d of result.disks) {
    const why = d.fullReason ? `: ${d.fullReason}` : '';
    await ctx.log(
      `${d.name}: ${d.mode}${why}; ${bytesText(d.dirtyBytes)} changed, ${bytesText(d.readBytes)} read, ` +
        `${d.newChunks} of ${d.chunks} chunks new (${bytesText(d.newBytes)} stored)`,
    );
  }
  if (result.consistencyNote) await ctx.log(`${result.consistency}-consistent: ${result.consistencyNote}`);
  const recorded = await deps.backups.record(
    { datastoreId: ds.id, vmId: p.vmId, vmName: row.name, spec, jobId: p.jobId, taskId: ctx.id, startedAt },
    result,
  );
  const f = figuresOf(result.disks);
  return {
    datastore: ds.name,
    vm: row.name,
    backup: recorded.id,
    mode: modeOf(result.disks),
    consistency: result.consistency,
    ...f,
  };
}

/** What is decided before the host is asked anything: a refusal here leaves nothing to remove. */
async function prepare(deps: BackupDeps, ctx: TaskContext, p: BackupRunParams) {
  const row = await deps.store.row(p.vmId);
  if (!row.hostId) throw new TernError('conflict', `VM ${row.name} has no host`);
  if (!['running', 'paused', 'stopped'].includes(row.state))
    throw new TernError(
      'conflict',
      `VM ${row.name} is ${row.state}: it can be backed up running, paused or stopped`,
    );
  const spec = vmSpecOf(row);
  const disks = backupDisks(spec);
  if (disks.length === 0) throw new TernError('conflict', `VM ${row.name} has no writable disk to back up`);
  const ds = await deps.datastores.row(p.datastoreId);
  const { hostId, agent } = await deps.datastores.agentFor(ds, row.hostId);
  const host = await deps.hosts.get(hostId);
  if (host.state !== 'online' && host.state !== 'maintenance')
    throw new TernError(
      'conflict',
      `host ${host.name} is ${host.state}: VM ${row.name} cannot be backed up now`,
    );
  const latest = await deps.backups.latest(ds.id, p.vmId);
  if (latest && latest.id >= p.backupId)
    throw new TernError('conflict', `VM ${row.name} has a backup ${latest.id} as new as ${p.backupId}`);
  // Disks overwritten by a restore since are as good as replaced: nothing to build on.
  const restoredAt = latest ? await restoredInPlaceAt(deps.db, p.vmId) : null;
  const previous = latest && !(restoredAt && restoredAt > latest.createdAt) ? latest.id : null;
  if (latest && !previous)
    await ctx.log(`read whole: the disks were restored in place at ${restoredAt}, after backup ${latest.id}`);
  return { row, spec, disks, ds, agent, previous };
}
