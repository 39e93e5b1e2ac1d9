/**
 * What the primary's side says of a VM, for the unplanned-failover guard (failover-guard.ts):
 * its host fenced, answering, or silent; and the VM as that host reports it when it answers.
 * Fenced is the HA watch's `failed` (silent past the time it takes a host to fence itself) for
 * a VM the host confirmed it protects: a host's fence kills only those, so a VM it never
 * confirmed may still run on a failed host, which is silent, not fenced, for that VM.
 */
import type { TernError } from '../../errors.ts';
import { parseAcknowledged } from '../ha/assignment.ts';
import type { ReplicaFailoverDeps } from './failover-deps.ts';
import type { PrimaryFacts } from './failover-guard.ts';

export async function primaryFacts(d: ReplicaFailoverDeps, vmId: string): Promise<PrimaryFacts> {
  const row = await d.store.row(vmId);
  if (!row.hostId) return { vmName: row.name, vm: 'stopped', host: 'online' };
  const host = await d.hosts.get(row.hostId);
  const fences = parseAcknowledged(
    (await d.db.selectFrom('hosts').select('haAcknowledged').where('id', '=', row.hostId).executeTakeFirst())
      ?.haAcknowledged ?? null,
  ).has(vmId);
  if (d.ha.healthOf(row.hostId) === 'failed')
    return { vmName: row.name, vm: 'unknown', host: fences ? 'fenced' : 'silent' };
  if (host.state !== 'online') return { vmName: row.name, vm: 'unknown', host: 'silent' };
  const reported = await d.hosts
    .client(row.hostId)
    .getVm(vmId)
    .then(
      (vm) => vm,
      (_err: TernError) => undefined,
    );
  if (reported === undefined) return { vmName: row.name, vm: 'unknown', host: 'silent' };
  const vm =
    !reported || reported.state === 'stopped' || reported.state === 'crashed'
      ? 'stopped'
      : reported.state === 'running' || reported.state === 'paused'
        ? reported.state
        : 'unknown';
  return { vmName: row.name, vm, host: 'online' };
}
