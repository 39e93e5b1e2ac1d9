/**
 * The agent route that replicates a VM as one recovery point (src/agent/replication/sender.ts):
 * the primary's host takes a point-in-time view of the VM's disks and streams what changed (or
 * everything, saying why) straight to the replica's host, answering progress and log lines,
 * then the result once the replica's host committed the point. Part of `agentRoutes`.
 */
import { IdParams, tags } from './agent-route-parts.ts';
import { ReplicateVmReport, ReplicateVmRequest } from './replication.ts';
import { route } from './route.ts';

export const agentReplicateRoutes = {
  replicateVm: route({
    summary:
      "Replicate a VM (running or stopped) as a recovery point to the replica's host: progress and log lines, then `done` with the result or `error`",
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/replicate',
    params: IdParams,
    body: ReplicateVmRequest,
    reply: {},
    rawReply: {
      contentType: 'application/x-ndjson',
      description: 'newline-delimited JSON, one line each as `lines` declares',
    },
    lines: ReplicateVmReport,
  }),
};
