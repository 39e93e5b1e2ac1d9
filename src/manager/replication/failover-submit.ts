import { randomUUID } from 'node:crypto';
/**
 * A failover asked for through the API: checked before its task runs. Unplanned, the guard
 * (failover-guard.ts) decides over what the primary's side says now, and a forced one carries
 * its risk into the task log and the audit; the point is fixed here (the newest, or the one
 * named). Planned, the primary's host must answer: it shuts the
 * VM down (a stopped one stays so) and sends the last cycle from its disks.
 */
import { TernError } from '../../errors.ts';
import type { Task } from '../../wire/task.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { type FailoverParams, refusal } from './failover.ts';
import { chosenPoint, type ReplicaFailoverDeps } from './failover-deps.ts';
import { decideUnplannedFailover } from './failover-guard.ts';
import { primaryFactsOf } from './primary-facts.ts';

export interface FailoverRequest {
  planned?: boolean;
  /** Unplanned: a point id, or `latest` (the default). */
  point?: string;
  force?: boolean;
  /** Planned: no reverse replication afterwards. */
  noReverse?: boolean;
  /** Planned: how long the guest is given to shut down (default 120 s). */
  shutdownTimeoutSeconds?: number;
}

export async function submitFailover(
  d: ReplicaFailoverDeps,
  kind: TaskKind<FailoverParams>,
  ref: string,
  req: FailoverRequest,
): Promise<{ task: Task; risk: string | null }> {
  const rel = await d.replications.row(ref);
  if (rel.targetSiteId)
    throw new TernError(
      'conflict',
      'its replica is at another site: fail over there (tern vm failover at that site)',
    );
  // At the site keeping a replica of another site's VM: that VM is not in this inventory.
  const primary = rel.sourceSiteId
    ? { id: rel.vmId, name: rel.sourceVmName ?? rel.vmId, state: 'unknown', haPolicy: null }
    : await d.store.row(rel.vmId);
  if (rel.sourceSiteId && req.planned)
    throw new TernError(
      'conflict',
      `${primary.name} runs at another site: stop it there and let a last cycle run, then fail over here (unplanned; its site then says it is stopped)`,
    );
  if (rel.state === 'failed-over')
    throw new TernError(
      'conflict',
      `${primary.name} has failed over already: its replica is the VM that runs`,
    );
  if (rel.state === 'initial' || rel.state === 'removed')
    throw new TernError(
      'conflict',
      `the replication of ${primary.name} is ${rel.state}: there is nothing to fail over to`,
    );
  const replica = await d.store.row(rel.replicaVmId);
  const planned = req.planned === true;
  let point: string | null = null;
  let risk: string | null = null;
  if (planned) {
    if (req.point)
      throw new TernError(
        'invalid_request',
        'a planned failover runs on the point it sends last: no point is chosen',
        {
          field: 'point',
        },
      );
  } else {
    const decision = decideUnplannedFailover(await primaryFactsOf(d, rel), req.force === true);
    if (!decision.allowed) throw refusal(decision);
    risk = decision.risk;
    point = (await chosenPoint(d, rel, req.point, primary.name)).id;
  }
  const params: FailoverParams = {
    replicationId: rel.id,
    planned,
    point,
    force: req.force === true,
    risk,
    shutdownTimeoutSeconds: req.shutdownTimeoutSeconds ?? 120,
    replicaSpec: replica.spec,
    replicaDiskSizes: replica.diskSizes,
    primaryRan: primary.state === 'running' || primary.state === 'paused',
    haPolicy: primary.haPolicy,
    reverse: planned && req.noReverse !== true,
    // Known before the lend, which starts the reverse's bitmap on the replica's new disks.
    reverseId: planned && req.noReverse !== true ? randomUUID() : null,
  };
  // The cycle's lock too: no cycle of the relationship runs beside its failover.
  const task = await d.tasks.submit(kind, params, [
    `vm:${primary.id}`,
    `vm:${replica.id}`,
    `replication:${rel.id}`,
  ]);
  return { task, risk };
}
