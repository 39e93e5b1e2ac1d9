/**
 * A restore asked for through the API: checked, planned and recorded before its task runs. As
 * a new VM, the VM is recorded `creating` with new NICs (the host is the datastore's, or the
 * one asked for, or any online host with the pool), as a created VM is, so a kill at any point
 * leaves either nothing or a creation the task's cleanup undoes. In place, only when asked with
 * confirmation, of the backed-up VM while it is stopped, each disk the same size.
 */
import { randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { RestoreBackupBody } from '../../wire/api/backups.ts';
import type { BackupDiskResult } from '../../wire/backup.ts';
import type { Task } from '../../wire/task.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { BackupTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { type NicDeps, planNics } from '../networks/nics.ts';
import type { TaskEngine, TaskKind } from '../tasks/engine.ts';
import { newVmRow } from '../vms/store.ts';
import type { BackupDeps } from './deps.ts';
import { backupObject } from './names.ts';
import type { BackupRestoreParams } from './restore.ts';
import { nicRequestsOf, planInPlace, planNewVm } from './restore-plan.ts';

export interface RestoreDeps extends BackupDeps, NicDeps {
  tasks: TaskEngine;
  /** The live kind only where live restores are asked for (the API's; a restore test restores whole). */
  kinds: { backupRestore: TaskKind<BackupRestoreParams>; backupLiveRestore?: TaskKind<BackupRestoreParams> };
}

export async function submitRestore(
  d: RestoreDeps,
  backup: BackupTable,
  body: RestoreBackupBody,
  ownerId: string | null,
  /** `withoutNics`: a new VM with no NIC at all (a restore test's throwaway VM). */
  opts: { withoutNics?: boolean } = {},
): Promise<Task> {
  const disks = chosenDisks(JSON.parse(backup.disks) as BackupDiskResult[], body.disks, backup.id);
  const lock = backupObject({ datastoreId: backup.datastoreId, vmId: backup.vmId, backupId: backup.id });
  const base = {
    datastoreId: backup.datastoreId,
    sourceVmId: backup.vmId,
    backupId: backup.id,
    bandwidth: body.bandwidth ?? 0,
  };
  if (body.mode === 'in-place') {
    if (body.live)
      throw new TernError('invalid_request', 'a live restore makes a new VM; it is not done in place', {
        field: 'live',
      });
    if (body.confirm !== true)
      throw new TernError(
        'invalid_request',
        "an in-place restore overwrites the VM's disks: confirm it (confirm: true)",
        {
          field: 'confirm',
        },
      );
    const row = await d.store.row(backup.vmId).catch(() => {
      throw new TernError('not_found', `VM ${backup.vmName} is gone: restore the backup as a new VM`);
    });
    if (row.state !== 'stopped')
      throw new TernError(
        'conflict',
        `VM ${row.name} is ${row.state}: shut it down before restoring it in place`,
      );
    const targets = planInPlace(vmSpecOf(row), JSON.parse(row.diskSizes) as number[], disks);
    const params = {
      ...base,
      mode: 'in-place' as const,
      vmId: row.id,
      volumes: [],
      targets,
      start: body.start ?? false,
    };
    return d.tasks.submit(d.kinds.backupRestore, params, [`vm:${row.id}`, lock]);
  }
  const spec = JSON.parse(backup.spec) as VmSpec;
  const ds = await d.datastores.row(backup.datastoreId);
  const pool = body.pool ?? spec.disks[0]?.volume.pool ?? 'local';
  const hasPool = (facts: { pools: { name: string }[] } | null) =>
    facts?.pools.some((p) => p.name === pool) ?? false;
  const asked = body.host ? await d.hosts.get(body.host) : null;
  if (ds.hostId && asked && asked.id !== ds.hostId)
    throw new TernError('conflict', `datastore ${ds.name} is reached only by its own host: restore there`, {
      field: 'host',
    });
  const host = ds.hostId
    ? await d.hosts.get(ds.hostId)
    : (asked ?? (await d.hosts.pickHost((h) => hasPool(h.facts), `with storage pool ${pool}`)));
  if (!hasPool(host.facts))
    throw new TernError('not_found', `host ${host.name} has no storage pool ${pool}`, { field: 'pool' });
  const id = randomUUID();
  const name = body.name ?? `${backup.vmName.slice(0, 54)}-restored`;
  const nics = await planNics(d, opts.withoutNics ? [] : nicRequestsOf(spec));
  let plan: ReturnType<typeof planNewVm>;
  try {
    plan = planNewVm(spec, disks, { id, name, pool, nics: nics.map((n) => n.spec) });
    const row = newVmRow({ ...plan, clone: null, seed: { metaData: '' } }, host.id, null, randomUUID());
    await d.store.insert(
      { ...row, ownerId },
      nics.map((n) => n.row),
    );
  } finally {
    d.networks.release(nics.map((n) => n.row));
  }
  const params = {
    ...base,
    mode: 'new' as const,
    vmId: id,
    volumes: plan.volumes,
    targets: plan.targets,
    start: body.start ?? false,
  };
  try {
    // Live: the VM runs from the backup at once and its data streams in underneath.
    const kind = body.live ? d.kinds.backupLiveRestore : d.kinds.backupRestore;
    if (!kind) throw new TernError('invalid_request', 'a live restore cannot be asked for here');
    return await d.tasks.submit(kind, { ...params, start: params.start || body.live === true }, [
      `vm:${id}`,
      lock,
    ]);
  } catch (err) {
    await d.store.remove(id);
    throw err;
  }
}

/** The backup's disks a restore writes: all, or those asked for, each of which it must have. */
export function chosenDisks(
  disks: BackupDiskResult[],
  asked: readonly string[] | undefined,
  backupId: string,
): BackupDiskResult[] {
  if (!asked) return disks;
  for (const name of asked)
    if (!disks.some((d) => d.name === name))
      throw new TernError(
        'not_found',
        `backup ${backupId} has no disk ${name} (it has ${disks.map((d) => d.name).join(', ')})`,
        { field: 'disks' },
      );
  return disks.filter((d) => asked.includes(d.name));
}
