/**
 * What the primary's side says of a VM, for the unplanned-failover guard (failover-guard.ts):
 * its host fenced, answering, or silent; and the VM as that host reports it when it answers.
 * Fenced is the HA watch's `failed` (silent past the time it takes a host to fence itself) for
 * a VM the host confirmed it protects: a host's fence kills only those, so a VM it never
 * confirmed may still run on a failed host, which is silent, not fenced, for that VM.
 */
import { TernError } from '../../errors.ts';
import type { AgentVm } from '../../wire/agent.ts';
import type { ReplicationTable } from '../db/schema.ts';
import { parseAcknowledged } from '../ha/assignment.ts';
import type { HostHealth } from '../ha/detector.ts';
import type { TrustedSite } from '../sites/trust.ts';
import type { ReplicaFailoverDeps } from './failover-deps.ts';
import type { PrimaryFacts } from './failover-guard.ts';

/** What was gathered of the primary's side; `reported` undefined: its host was not asked or did not answer. */
export interface PrimarySide {
  vmName: string;
  hasHost: boolean;
  haHealth: HostHealth | null;
  hostOnline: boolean;
  /** The host confirmed it protects the VM (HA): its fence kills it. */
  protectsVm: boolean;
  reported: Pick<AgentVm, 'state'> | null | undefined;
}

/** The facts the guard decides on (pure). */
export function factsOf(s: PrimarySide): PrimaryFacts {
  const vmName = s.vmName;
  if (!s.hasHost) return { vmName, vm: 'stopped', host: 'online' };
  if (s.haHealth === 'failed') return { vmName, vm: 'unknown', host: s.protectsVm ? 'fenced' : 'silent' };
  if (!s.hostOnline || s.reported === undefined) return { vmName, vm: 'unknown', host: 'silent' };
  const state = s.reported?.state ?? 'stopped';
  const vm =
    state === 'stopped' || state === 'crashed'
      ? 'stopped'
      : state === 'running' || state === 'paused'
        ? state
        : 'unknown';
  return { vmName, vm, host: 'online' };
}

export async function primaryFacts(d: ReplicaFailoverDeps, vmId: string): Promise<PrimaryFacts> {
  const row = await d.store.row(vmId);
  if (!row.hostId)
    return factsOf({
      vmName: row.name,
      hasHost: false,
      haHealth: null,
      hostOnline: false,
      protectsVm: false,
      reported: null,
    });
  const host = await d.hosts.get(row.hostId);
  const haHealth = d.ha.healthOf(row.hostId);
  const protectsVm = parseAcknowledged(
    (await d.db.selectFrom('hosts').select('haAcknowledged').where('id', '=', row.hostId).executeTakeFirst())
      ?.haAcknowledged ?? null,
  ).has(vmId);
  const ask = host.state === 'online' && haHealth !== 'failed';
  const reported = ask
    ? await d.hosts
        .client(row.hostId)
        .getVm(vmId)
        .then(
          (vm) => vm,
          (_err: TernError) => undefined,
        )
    : undefined;
  return factsOf({
    vmName: row.name,
    hasHost: true,
    haHealth,
    hostOnline: host.state === 'online',
    protectsVm,
    reported,
  });
}

/**
 * The primary's side of a relationship: this cluster's VM, or a VM of another site, which is
 * asked (a site that does not answer is silent: nothing is known of what runs there).
 */
export async function primaryFactsOf(d: ReplicaFailoverDeps, rel: ReplicationTable): Promise<PrimaryFacts> {
  if (rel.sourceSiteId === null) return primaryFacts(d, rel.vmId);
  const vmName = rel.sourceVmName ?? rel.vmId;
  const silent: PrimaryFacts = { vmName, vm: 'unknown', host: 'silent' };
  const site = await d.sites.byId(rel.sourceSiteId);
  if (!site) return silent;
  return d.remoteReplicas.primaryFacts(site, rel.id).then(
    (f) => ({ ...f, vmName }),
    () => silent,
  );
}

/** What this cluster tells `site`, which keeps a replica (replication `id`) of one of its VMs. */
export async function factsForSite(
  d: ReplicaFailoverDeps,
  site: TrustedSite,
  id: string,
): Promise<PrimaryFacts> {
  const rel = await d.db.selectFrom('replications').selectAll().where('id', '=', id).executeTakeFirst();
  if (!rel || rel.targetSiteId !== site.id)
    throw new TernError('not_found', `no VM of this cluster replicates to site ${site.name} as ${id}`);
  return primaryFacts(d, rel.vmId);
}
