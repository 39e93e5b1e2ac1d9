/**
 * backup.restore: a backup written back by a host onto volumes. As a new VM (recorded
 * `creating` before the task, as a created VM is): its volumes are made, each disk written,
 * then it is stopped (or started when asked). Killed or failed, the cleanup removes the new
 * VM's volumes and forgets it, as an unfinished creation is; the backup is untouched. In place:
 * the VM is stopped and its disks are overwritten; a restore that fails midway leaves them
 * partly written, which cannot be undone: the VM is marked so (its state reason says to restore
 * again) and the task fails saying which disk.
 */
import { TernError } from '../../errors.ts';
import type { CreateVolumeRequest } from '../../wire/agent.ts';
import type { Db } from '../db/database.ts';
import type { TaskContext, TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { startVm } from '../vms/power.ts';
import type { BackupDeps } from './deps.ts';
import { bytesText, percentOf, progressText } from './figures.ts';
import type { RestoreTarget } from './restore-plan.ts';

export interface BackupRestoreParams {
  datastoreId: string;
  /** The backed-up VM (its backups' group) and the backup. */
  sourceVmId: string;
  backupId: string;
  mode: 'new' | 'in-place';
  /** The VM restored into: new (recorded `creating`) or the backed-up one. */
  vmId: string;
  /** New VM only: what to make before writing. */
  volumes: CreateVolumeRequest[];
  targets: RestoreTarget[];
  start: boolean;
  bandwidth: number;
}

const logEveryMs = 5_000;
const partlyRestored = 'partly restored from a backup: restore it again before starting it';

export function backupRestoreTask(deps: BackupDeps): TaskKind<BackupRestoreParams> {
  return {
    kind: 'backup.restore',
    onInterrupt: 'fail',
    run: (ctx, p) => runRestore(deps, ctx, p),
    async cleanup(ctx, p) {
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row) return;
      if (p.mode === 'in-place') {
        if (row.stateReason === partlyRestored) await ctx.log(`VM ${row.name}'s disks are partly restored`);
        return;
      }
      // A new VM that finished restoring is kept (stopped, or its start failed).
      if (row.state !== 'creating') return;
      await removeRestoredVm(deps, ctx, p, row);
    },
  };
}

/** Undoes a restore into a new VM: its volumes removed, then the VM forgotten. */
export async function removeRestoredVm(
  deps: BackupDeps,
  ctx: TaskContext,
  p: Pick<BackupRestoreParams, 'vmId' | 'volumes'>,
  row: { name: string; hostId: string | null },
): Promise<void> {
  if (row.hostId) {
    const agent = deps.hosts.client(row.hostId);
    const undo = new Undo();
    const gone = (err: TernError) => {
      if (err.code !== 'not_found') throw err;
    };
    for (const v of p.volumes)
      await undo.step(`remove ${v.volume.path}`, () => agent.deleteVolume(v.volume).catch(gone));
    undo.done();
  }
  await deps.store.remove(p.vmId);
  await ctx.log(`removed the partly restored VM ${row.name}`);
}

async function runRestore(deps: BackupDeps, ctx: TaskContext, p: BackupRestoreParams) {
  const ds = await deps.datastores.row(p.datastoreId);
  const backup = await deps.backups.find(ds.id, p.sourceVmId, p.backupId);
  if (!backup) throw new TernError('not_found', `backup ${p.backupId} is no longer in datastore ${ds.name}`);
  const row = await deps.store.row(p.vmId);
  if (!row.hostId) throw new TernError('conflict', `VM ${row.name} has no host`);
  if (p.mode === 'new' && row.state !== 'creating')
    throw new TernError('conflict', `VM ${row.name} is ${row.state}, not being restored`);
  if (p.mode === 'in-place' && row.state !== 'stopped')
    throw new TernError(
      'conflict',
      `VM ${row.name} is ${row.state}: shut it down before restoring it in place`,
    );
  const { agent } = await deps.datastores.agentFor(ds, row.hostId);
  const access = await deps.datastores.access(ds);
  const total = p.targets.reduce((a, t) => a + t.sizeBytes, 0);
  if (p.mode === 'new') {
    for (const v of p.volumes) {
      ctx.throwIfCancelled();
      await ctx.step(`creating ${v.volume.path}`, 1);
      await agent.createVolume(v);
    }
  } else {
    await deps.store.setState(p.vmId, { state: 'stopped', reason: partlyRestored });
  }
  let before = 0;
  let lastLog = 0;
  const restored = [];
  for (const t of p.targets) {
    await ctx.step(
      `restoring ${t.disk} (${bytesText(t.sizeBytes)}) onto ${t.volume.pool}:${t.volume.path}`,
      percentOf(before, { doneBytes: 0 }, total),
    );
    const result = await agent.backup.restoreDisk(
      {
        datastore: access,
        group: p.sourceVmId,
        id: p.backupId,
        disk: t.disk,
        target: t.volume,
        format: t.format,
        bandwidth: p.bandwidth,
      },
      (r) => {
        const percent = percentOf(before, r, total);
        if (Date.now() - lastLog >= logEveryMs) {
          lastLog = Date.now();
          ctx.step(progressText(r, 'written'), percent).catch(() => {});
        } else ctx.progress(percent).catch(() => {});
      },
      ctx.signal,
    );
    await ctx.log(
      `${t.disk}: ${bytesText(result.writtenBytes)} written of ${bytesText(result.sizeBytes)}, sha256 ${result.sha256}`,
    );
    restored.push({ disk: t.disk, ...result });
    before += t.sizeBytes;
  }
  await deps.store.setState(p.vmId, { state: 'stopped', reason: null });
  if (p.start) {
    await ctx.step('starting', 99);
    await startVm(deps, ctx, p.vmId);
  }
  return { vm: row.name, backup: p.backupId, disks: restored };
}

/**
 * When the VM's disks were last written by an in-place restore (finished or not), or null:
 * its dirty bitmaps no longer tell what changed since the backup before it.
 */
export async function restoredInPlaceAt(db: Db, vmId: string): Promise<string | null> {
  const rows = await db
    .selectFrom('tasks')
    .select(['params', 'startedAt'])
    .where('kind', '=', 'backup.restore')
    .where('startedAt', 'is not', null)
    .where('objects', 'like', `%vm:${vmId}%`)
    .execute();
  let last: string | null = null;
  for (const r of rows) {
    const p = JSON.parse(r.params) as Partial<BackupRestoreParams>;
    if (p.mode === 'in-place' && p.vmId === vmId && r.startedAt && (!last || r.startedAt > last))
      last = r.startedAt;
  }
  return last;
}
