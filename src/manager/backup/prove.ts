/**
 * backup.prove: the restore test. A backup is proven only when it boots: it is restored (a
 * `backup.restore` task of its own) as a throwaway VM with no NIC, so it never meets the
 * network as a second copy of its VM, started, and waited on until its guest agent answers;
 * the time to a running guest is recorded, the VM deleted, and the backup marked proven with
 * what was measured. A backup whose VM does not come up fails the test and stays unproven. The
 * throwaway VM is named after the task, so whatever ends the task (a failure, a cancel, a
 * manager killed midway) its cleanup finds and deletes it.
 */
import { TernError } from '../../errors.ts';
import type { BackupProof } from '../../wire/api/backup-jobs.ts';
import type { Task } from '../../wire/task.ts';
import type { NicDeps } from '../networks/nics.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { TaskContext, TaskEngine, TaskKind } from '../tasks/engine.ts';
import { recoveryHostWaitMs } from '../tasks/host-gate.ts';
import { deleteTask } from '../vms/delete.ts';
import { startVm } from '../vms/power.ts';
import { waitForVm } from '../vms/wait.ts';
import type { BackupDeps } from './deps.ts';
import { backupObject } from './names.ts';
import type { BackupRestoreParams } from './restore.ts';
import { submitRestore } from './restore-vm.ts';

export interface BackupProveParams {
  datastoreId: string;
  vmId: string;
  backupId: string;
  /** Where the throwaway VM goes (null: as a restore places it). */
  host: string | null;
  pool: string | null;
  /** How long its guest agent may take to answer once it runs. */
  timeoutS: number;
}

export type ProveDeps = BackupDeps & NicDeps & { secrets: SecretStore; tasks: TaskEngine };

/**
 * What a proof locks: not the backup itself, which the restore it runs takes, but one proof of
 * it at a time.
 */
export const proveObjects = (p: Pick<BackupProveParams, 'datastoreId' | 'vmId' | 'backupId'>) => [
  `${backupObject(p)}:prove`,
];

/** The throwaway VM's name: the task's, so a cleanup after a crash knows it. */
export const throwawayName = (taskId: string) => `prove-${taskId.slice(0, 8)}`;

export function backupProveTask(
  deps: ProveDeps,
  backupRestore: TaskKind<BackupRestoreParams>,
): TaskKind<BackupProveParams> {
  return {
    kind: 'backup.prove',
    onInterrupt: 'fail',
    run: (ctx, p) => prove(deps, backupRestore, ctx, p),
    async cleanup(ctx) {
      await removeThrowaway(deps, ctx);
    },
  };
}

/**
 * Deletes the throwaway VM, forced off if it runs. One still `creating` belongs to its restore,
 * whose own cleanup removes it.
 */
async function removeThrowaway(deps: ProveDeps, ctx: TaskContext): Promise<void> {
  const row = await deps.store.find(throwawayName(ctx.id));
  if (!row || row.state === 'creating') return;
  // After a restart its host may not be back yet: what it runs must be known before deleting.
  if (ctx.resumed && row.hostId)
    await deps.hosts.whenReported(row.hostId, recoveryHostWaitMs, ctx.signal, (host) =>
      ctx.step(`waiting for host ${host} to delete ${row.name}`),
    );
  await deleteTask(deps).run(ctx, { vmId: row.id, keepDisks: false, force: true });
  await ctx.log(`deleted the throwaway VM ${row.name}`);
}

async function prove(
  deps: ProveDeps,
  backupRestore: TaskKind<BackupRestoreParams>,
  ctx: TaskContext,
  p: BackupProveParams,
): Promise<BackupProof> {
  const backup = await deps.backups.find(p.datastoreId, p.vmId, p.backupId);
  if (!backup) throw new TernError('not_found', `no backup ${p.backupId} of VM ${p.vmId} in the inventory`);
  const name = throwawayName(ctx.id);
  const began = performance.now();
  await ctx.step(`restoring backup ${backup.id} of ${backup.vmName} as ${name}, without a NIC`, 5);
  const restore = await submitRestore(
    { ...deps, kinds: { backupRestore } },
    backup,
    {
      mode: 'new',
      name,
      start: false,
      ...(p.host ? { host: p.host } : {}),
      ...(p.pool ? { pool: p.pool } : {}),
    },
    null,
    { withoutNics: true },
  );
  await ctx.log(`restore task ${restore.id}`);
  const restored = await settledOrCancelled(deps.tasks, restore, ctx.signal);
  if (restored.state !== 'succeeded')
    throw new TernError(
      restored.state === 'cancelled' ? 'cancelled' : 'storage_error',
      `backup ${backup.id} of ${backup.vmName} did not restore: ${restored.error?.message ?? restored.state}; it stays unproven`,
    );
  const vm = await deps.store.row(name);
  await ctx.step(`starting ${name}`, 70);
  const startedAt = performance.now();
  await startVm(deps, ctx, vm.id);
  await ctx.step(`waiting up to ${p.timeoutS} s for its guest agent`, 80);
  const up = await waitForVm(
    deps.bus,
    deps.store,
    vm.id,
    (v) => v.guest.agent === 'responding',
    p.timeoutS * 1000,
    ctx.signal,
    'answer through its guest agent',
  ).catch((err: TernError) => {
    throw new TernError(
      err.code,
      `backup ${backup.id} of ${backup.vmName} did not prove: ${err.message}; it stays unproven`,
    );
  });
  const seconds = (ms: number) => Math.round(ms / 10) / 100;
  const proof: BackupProof = {
    host: up.host ?? '',
    secondsToGuest: seconds(performance.now() - startedAt),
    secondsTotal: seconds(performance.now() - began),
    guestOs: up.guest.os?.prettyName ?? up.guest.os?.name ?? null,
    task: ctx.id,
  };
  await ctx.log(
    `its guest agent answered ${proof.secondsToGuest} s after the start (${proof.secondsTotal} s with the restore)`,
  );
  await ctx.step(`deleting ${name}`, 95);
  await removeThrowaway(deps, ctx);
  await deps.backups.setProven({ datastoreId: p.datastoreId, vmId: p.vmId, id: p.backupId }, proof);
  return proof;
}

/** Waits for a task this one started; cancelling this one cancels it (its cleanup then runs). */
async function settledOrCancelled(tasks: TaskEngine, task: Task, signal: AbortSignal): Promise<Task> {
  const cancel = () => void tasks.cancel(task.id).catch(() => {});
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await tasks.settled(task.id);
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}
