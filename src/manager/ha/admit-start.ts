/**
 * Admission for protected VMs: starting one (or protecting a running one) that would leave the
 * cluster tolerating fewer host failures than it should warns — or, in strict mode, is refused
 * with the reason.
 */
import { TernError } from '../../errors.ts';
import type { Placer } from '../cluster/placer.ts';
import type { Db } from '../db/database.ts';
import type { VmTable } from '../db/schema.ts';
import { admit } from './admission.ts';
import { haVms } from './protected.ts';

/** Returns a warning for the task log, or null; throws when strict admission refuses. */
export async function admitProtected(
  deps: { db: Db; placer: Placer },
  row: VmTable,
  hostId: string,
): Promise<string | null> {
  const settings = await deps.placer.settings.ha();
  if (!settings.enabled) return null;
  // The cluster as it is without this VM: its own room is what admission weighs.
  const snapshot = await deps.placer.snapshot(row.id);
  const [vm] = await haVms(deps.db, snapshot, [{ ...row, hostId }]);
  if (vm?.policy.restart !== 'restart') return null;
  const others = (await deps.db.selectFrom('vms').selectAll().where('id', '!=', row.id).execute()).filter(
    (r) => r.state === 'running' || r.state === 'paused',
  );
  const a = admit(vm, hostId, {
    hosts: snapshot.hosts,
    vms: await haVms(deps.db, snapshot, others),
    failuresToTolerate: settings.failuresToTolerate,
    policy: await deps.placer.settings.policy(),
  });
  if (a.admitted) return null;
  const message = `protected VM ${row.name} breaks the HA plan: ${a.reason}`;
  if (settings.strictAdmission) throw new TernError('conflict', `${message} (strict admission)`);
  return message;
}
