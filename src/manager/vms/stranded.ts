/**
 * Creations that never got their task. `POST /vms` records the VM (`creating`), its placement
 * groups and its user-data secret, and only then submits vm.create: a manager killed between the
 * two leaves a VM that no task will ever finish, holding its name and its project's quota. Only
 * the task writes to hosts, so such a VM is nothing but rows; when the manager starts, they go.
 */
import type { Logger } from '../../log.ts';
import type { AuditLog } from '../audit/log.ts';
import type { Db } from '../db/database.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { TaskEngine } from '../tasks/engine.ts';
import type { VmStore } from './store.ts';

export interface CreatingVm {
  id: string;
  name: string;
  imagePool: string | null;
}

/**
 * The VMs left `creating` by a create whose task was never recorded. Not one that any task ever
 * named: a vm.create that failed and could not undo its host's work keeps its VM on purpose, and
 * one interrupted resumes. Not one an image-pool task makes either (a pool member, or a
 * maintenance VM `<pool>-v<n>`): that task writes its volumes right after the row, and its own
 * end or its operator takes them apart.
 */
export function strandedCreations(
  creating: readonly CreatingVm[],
  named: (vmId: string) => boolean,
  pools: ReadonlySet<string>,
): CreatingVm[] {
  const maintenanceVm = (name: string) => {
    const m = /^(.+)-v\d+$/.exec(name);
    return m !== null && pools.has(m[1]);
  };
  return creating.filter((v) => v.imagePool === null && !maintenanceVm(v.name) && !named(v.id));
}

export interface SweepDeps {
  db: Db;
  store: VmStore;
  secrets: SecretStore;
  tasks: TaskEngine;
  audit: AuditLog;
  log: Logger;
}

/** Removes every stranded creation with its secrets and group memberships; says so for each. */
export async function sweepStrandedCreations(deps: SweepDeps): Promise<void> {
  const creating = await deps.db
    .selectFrom('vms')
    .select(['id', 'name', 'imagePool'])
    .where('state', '=', 'creating')
    .execute();
  if (creating.length === 0) return;
  const named = new Set<string>();
  for (const v of creating)
    if ((await deps.tasks.list({ object: `vm:${v.id}`, limit: 1 })).length > 0) named.add(v.id);
  const pools = new Set((await deps.db.selectFrom('imagePools').select('name').execute()).map((p) => p.name));
  for (const v of strandedCreations(creating, (id) => named.has(id), pools)) {
    // The secret first: a kill between the two leaves the row, and the next start sweeps it again.
    await deps.secrets.removeFor(`vm:${v.id}`);
    await deps.store.remove(v.id);
    const why = 'its creation was interrupted before its task was recorded; nothing of it was on a host';
    deps.log.warn({ vm: v.name, id: v.id }, `removed VM ${v.name}: ${why}`);
    await deps.audit.append({
      actor: 'tern',
      actorId: null,
      via: 'recovery',
      action: 'remove stranded VM',
      object: `vms/${v.name}`,
      sourceIp: null,
      result: 'ok',
      status: null,
      detail: why,
    });
  }
}
