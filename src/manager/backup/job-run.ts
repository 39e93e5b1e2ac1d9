/**
 * backup.job: one run of a backup job. It reads the job's selection against the inventory,
 * backs up each VM as a `backup.run` task of its own (its log, its progress, its cleanup after
 * a crash), as many at once as the job's bounds per host and per datastore allow across every
 * job (slots.ts), then prunes each VM backed up by the job's retention. It succeeds only when
 * every VM selected was backed up with every one of its disks and every prune worked: anything
 * else fails the run, names each failure, and raises an alert that the next clean run clears.
 * Interrupted by a manager restart, it fails (its VM backups are failed and cleaned up by their
 * own recovery) and raises the alert too.
 */
import { TernError } from '../../errors.ts';
import type { BackupJobResult } from '../../wire/api/backup-jobs.ts';
import type { Task } from '../../wire/task.ts';
import type { AlertStore } from '../alerts/store.ts';
import { groupsOfVms } from '../cluster/inventory.ts';
import type { BackupJobTable } from '../db/schema.ts';
import type { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskContext, TaskEngine, TaskKind } from '../tasks/engine.ts';
import type { BackupDeps } from './deps.ts';
import type { BackupJobs } from './jobs.ts';
import { backupDisks, backupObject, nextBackupId, timeOfBackupId } from './names.ts';
import { type BackupProveParams, proveObjects } from './prove.ts';
import type { BackupPruneParams } from './prune.ts';
import { applyRetention } from './retention.ts';
import type { BackupRunParams } from './run.ts';
import { selectVms } from './selection.ts';
import type { BackupSlots } from './slots.ts';

export interface BackupJobParams {
  jobId: string;
  /** Started by the scheduler (else by a person, `tern backup job run`). */
  scheduled: boolean;
  /** This scheduled run makes up for runs missed while the manager was away. */
  missed?: boolean;
}

export interface JobRunDeps extends BackupDeps {
  tasks: TaskEngine;
  alerts: AlertStore;
  backupJobs: BackupJobs;
  backupSlots: BackupSlots;
}

/** One VM's part of a run, as the task's result and error list it. */
export interface JobItem {
  vm: string;
  state: 'succeeded' | 'failed' | 'cancelled';
  backup: string | null;
  task: string | null;
  /** Backups this run pruned by the retention. */
  pruned: string[];
  /** The restore test of the new backup (a job that proves): seconds to a running guest. */
  proven?: number;
  error: string | null;
}

export const jobAlertId = (jobId: string) => `backup-job:${jobId}:failed`;

/** The lock a job's run holds, so one job never runs twice at once. */
export const jobObject = (jobId: string) => `backup-job:${jobId}`;

/** The kinds a job runs as tasks of their own. */
export interface JobKinds {
  backupRun: TaskKind<BackupRunParams>;
  backupPrune: TaskKind<BackupPruneParams>;
  backupProve: TaskKind<BackupProveParams>;
}

export function backupJobTask(deps: JobRunDeps, kinds: JobKinds): TaskKind<BackupJobParams> {
  return {
    kind: 'backup.job',
    onInterrupt: 'fail',
    run: (ctx, p) => runJob(deps, kinds, ctx, p),
    async cleanup(ctx, p, error) {
      // A run that ended on an error of its own (not the list of failed VMs, which runJob
      // recorded) or was interrupted: recorded as failed and alerted all the same.
      if (error.details?.items) return;
      const job = await deps.backupJobs.row(p.jobId).catch(() => null);
      if (!job) return;
      const cancelled = error.code === 'cancelled';
      await finish(deps, job, {
        state: cancelled ? 'cancelled' : 'failed',
        vms: 0,
        failed: 0,
        message: error.message,
      });
      await ctx.log(`backup job ${job.name} ${cancelled ? 'cancelled' : 'failed'}: ${error.message}`);
    },
  };
}

async function finish(deps: JobRunDeps, job: BackupJobTable, result: BackupJobResult): Promise<void> {
  await deps.backupJobs.recordResult(job.id, result);
  if (result.state === 'succeeded') {
    await deps.alerts.clear(jobAlertId(job.id));
    return;
  }
  await deps.alerts.raise({
    id: jobAlertId(job.id),
    severity: 'critical',
    object: `backup-job:${job.name}`,
    message: `backup job ${job.name} ${result.state}: ${result.message}`,
  });
}

async function runJob(deps: JobRunDeps, kinds: JobKinds, ctx: TaskContext, p: BackupJobParams) {
  const job = await deps.backupJobs.row(p.jobId);
  const ds = await deps.datastores.row(job.datastoreId);
  if (p.missed) await ctx.log('runs missed while the manager was away are made up by this one run');
  await ctx.step(`reading what backup job ${job.name} selects`, 1);
  const selected = await select(deps, job);
  const items: JobItem[] = selected.missing.map((why) => ({
    vm: why,
    state: 'failed',
    backup: null,
    task: null,
    pruned: [],
    error: why,
  }));
  for (const why of selected.missing) await ctx.log(why);
  const vms = selected.vms;
  await ctx.log(
    `${vms.length} VM(s) to back up into ${ds.name}: ${vms.map((v) => v.name).join(', ') || 'none'}` +
      ` (at most ${job.concurrencyPerHost} per host, ${job.concurrencyPerDatastore} on the datastore)`,
  );
  const limits = { perHost: job.concurrencyPerHost, perDatastore: job.concurrencyPerDatastore };
  const retention = deps.backupJobs.retentionOf(job);
  const waiting = [...vms];
  const running = new Map<string, Promise<void>>();
  const children = new Set<string>();
  let done = 0;

  const backUp = async (vm: (typeof vms)[number], release: () => void) => {
    const item: JobItem = { vm: vm.name, state: 'failed', backup: null, task: null, pruned: [], error: null };
    items.push(item);
    try {
      const latest = await deps.backups.latest(ds.id, vm.id);
      const params: BackupRunParams = {
        vmId: vm.id,
        datastoreId: ds.id,
        backupId: nextBackupId(new Date(), latest?.id ?? null),
        freeze: true,
        bandwidth: job.bandwidth,
        jobId: job.id,
      };
      const task = await deps.tasks.submit(kinds.backupRun, params, [`vm:${vm.id}`]);
      item.task = task.id;
      children.add(task.id);
      const ended: Task = await deps.tasks.settled(task.id);
      children.delete(task.id);
      if (ended.state !== 'succeeded') {
        item.state = ended.state === 'cancelled' ? 'cancelled' : 'failed';
        item.error = ended.error?.message ?? `its backup task ${ended.state}`;
        return;
      }
      item.backup = params.backupId;
      const missing = await missingDisks(deps, ds.id, vm.id, params.backupId);
      if (missing) {
        item.error = missing;
        return;
      }
      item.pruned = await prune(deps, kinds, ctx, ds.id, vm.id, vm.name, retention);
      if (job.prove) {
        const proof = await proveBackup(deps, kinds, {
          datastoreId: ds.id,
          vmId: vm.id,
          backupId: params.backupId,
        });
        if ('error' in proof) {
          item.error = proof.error;
          return;
        }
        item.proven = proof.secondsToGuest;
      }
      item.state = 'succeeded';
    } catch (err) {
      item.error = (err as Error).message;
    } finally {
      release();
      done++;
      await ctx.progress(5 + (done / Math.max(1, vms.length)) * 94).catch(() => {});
      await ctx
        .log(
          `${vm.name}: ${
            item.state === 'succeeded'
              ? `backup ${item.backup}${item.proven === undefined ? '' : `, proven (its guest agent answered ${item.proven} s after the start)`}`
              : `FAILED: ${item.error}`
          }`,
        )
        .catch(() => {});
    }
  };

  await ctx.step(`backing up ${vms.length} VM(s)`, 5);
  try {
    while (waiting.length > 0 || running.size > 0) {
      if (ctx.signal.aborted) break;
      // Start every waiting VM whose host and datastore have a free slot, in name order.
      for (let i = 0; i < waiting.length; ) {
        const vm = waiting[i];
        const release = deps.backupSlots.tryTake(vm.hostId ?? 'no host', ds.id, limits);
        if (!release) {
          i++;
          continue;
        }
        waiting.splice(i, 1);
        const work = backUp(vm, release).finally(() => running.delete(vm.id));
        running.set(vm.id, work);
      }
      if (running.size === 0 && waiting.length === 0) break;
      // Wait for one of ours to end, or for a slot another job gives back.
      await Promise.race([...running.values(), deps.backupSlots.released(), aborted(ctx.signal)]);
    }
  } finally {
    if (ctx.signal.aborted) {
      for (const id of children) await deps.tasks.cancel(id).catch(() => {});
      await Promise.allSettled(running.values());
    }
  }
  for (const vm of waiting)
    items.push({
      vm: vm.name,
      state: 'cancelled',
      backup: null,
      task: null,
      pruned: [],
      error: 'not started',
    });
  return conclude(deps, ctx, job, items);
}

function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * The restore test of a backup the run just made, as a task of its own: a backup that does not
 * boot is a failure of its VM's part of the run.
 */
async function proveBackup(
  deps: JobRunDeps,
  kinds: JobKinds,
  key: Pick<BackupProveParams, 'datastoreId' | 'vmId' | 'backupId'>,
): Promise<{ secondsToGuest: number } | { error: string }> {
  const params: BackupProveParams = { ...key, host: null, pool: null, timeoutS: 300 };
  const task = await deps.tasks.submit(kinds.backupProve, params, proveObjects(params));
  const ended = await deps.tasks.settled(task.id);
  if (ended.state === 'succeeded') return ended.result as { secondsToGuest: number };
  return { error: `backup ${key.backupId} did not prove: ${ended.error?.message ?? ended.state}` };
}

/** The job's selection over one read of the inventory. */
async function select(deps: JobRunDeps, job: BackupJobTable) {
  const rows = await deps.db.selectFrom('vms').select(['id', 'name', 'hostId', 'project']).execute();
  const groupsByVm = await groupsOfVms(
    deps.db,
    rows.map((r) => r.id),
  );
  const groups = new Set(
    (await deps.db.selectFrom('placementGroups').select('name').execute()).map((g) => g.name),
  );
  const projects = new Set(
    (await deps.db.selectFrom('projects').select('name').execute()).map((g) => g.name),
  );
  const inventory = rows.map((r) => ({ ...r, groups: (groupsByVm.get(r.id) ?? []).map((g) => g.name) }));
  return selectVms(deps.backupJobs.selectionOf(job), inventory, { groups, projects });
}

/**
 * A backup that lacks a disk of the VM is a failed backup of that VM, whatever its task said:
 * the one place a job checks the promise "every disk of every VM".
 */
async function missingDisks(deps: JobRunDeps, datastoreId: string, vmId: string, backupId: string) {
  const recorded = await deps.backups.find(datastoreId, vmId, backupId);
  if (!recorded) return `backup ${backupId} is not in the inventory`;
  const have = new Set((JSON.parse(recorded.disks) as { name: string }[]).map((d) => d.name));
  const want = backupDisks(JSON.parse(recorded.spec) as ReturnType<typeof vmSpecOf>).map((d) => d.name);
  const lacking = want.filter((n) => !have.has(n));
  return lacking.length > 0 ? `backup ${backupId} lacks ${lacking.join(', ')}` : null;
}

/**
 * Forgets the backups of one VM in the datastore that the retention does not keep, each as a
 * `backup.prune` task of its own (inventory first, then the host). A backup busy with another
 * task (a restore, a proof) is left for the next run, and said so; a prune that fails is a
 * failure of this VM's part of the run.
 */
async function prune(
  deps: JobRunDeps,
  kinds: JobKinds,
  ctx: TaskContext,
  datastoreId: string,
  vmId: string,
  vmName: string,
  retention: ReturnType<BackupJobs['retentionOf']>,
): Promise<string[]> {
  const rows = await deps.backups.list({ vm: vmId, datastoreId });
  const marks = applyRetention(
    rows
      .filter((r) => r.vmId === vmId)
      .map((r) => ({ id: r.id, createdAt: timeOfBackupId(r.id) ?? new Date(r.createdAt) })),
    retention,
    deps.backupJobs.zone,
  );
  const gone: string[] = [];
  for (const m of marks) {
    if (m.keep) continue;
    const params: BackupPruneParams = { datastoreId, vmId, backupId: m.backup.id };
    let task: Task;
    try {
      task = await deps.tasks.submit(kinds.backupPrune, params, [backupObject(params)]);
    } catch (err) {
      if ((err as TernError).code !== 'locked') throw err;
      await ctx.log(
        `${vmName}: backup ${m.backup.id} is busy (${(err as Error).message}); the next run prunes it`,
      );
      continue;
    }
    const ended = await deps.tasks.settled(task.id);
    if (ended.state !== 'succeeded')
      throw new TernError(
        'storage_error',
        `pruning backup ${m.backup.id} failed: ${ended.error?.message ?? ended.state}`,
      );
    gone.push(m.backup.id);
  }
  if (gone.length > 0)
    await ctx.log(`${vmName}: pruned ${gone.length} backup(s) by the retention: ${gone.join(', ')}`);
  return gone;
}

async function conclude(deps: JobRunDeps, ctx: TaskContext, job: BackupJobTable, items: JobItem[]) {
  const failed = items.filter((i) => i.state !== 'succeeded');
  const vms = items.length;
  if (failed.length === 0) {
    const message = vms === 0 ? 'nothing selected to back up' : `${vms} VM(s) backed up`;
    await finish(deps, job, { state: 'succeeded', vms, failed: 0, message });
    return { job: job.name, vms, failed: 0, items };
  }
  const cancelled = ctx.signal.aborted;
  const message =
    `${failed.length} of ${vms} VM(s) not backed up: ` +
    failed.map((i) => (i.error === i.vm ? i.vm : `${i.vm} (${i.error})`)).join('; ');
  await finish(deps, job, { state: cancelled ? 'cancelled' : 'failed', vms, failed: failed.length, message });
  throw new TernError(cancelled ? 'cancelled' : 'conflict', `backup job ${job.name}: ${message}`, { items });
}
