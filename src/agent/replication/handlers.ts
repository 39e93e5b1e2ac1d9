/**
 * What the agent does for each replica route (src/wire/agent-replica-routes.ts). The replicas
 * are files in the host's pools, so these serve a QEMU host and a simulated one alike.
 */
import { Readable } from 'node:stream';
import { TernError } from '../../errors.ts';
import type { Handlers } from '../../http/declared-routes.ts';
import { discardUnreadBody } from '../../http/unread-body.ts';
import type { agentReplicaRoutes } from '../../wire/agent-replica-routes.ts';
import { receivePoint } from './receive.ts';
import type { ReplicaStore } from './replica-store.ts';

/** The ticket of `Authorization: Bearer <ticket>`, or a refusal saying what is missing. */
export function ticketOf(authorization: string | undefined): string {
  const m = /^Bearer ([A-Za-z0-9_-]{43})$/.exec(authorization ?? '');
  if (!m)
    throw new TernError(
      'unauthorized',
      'a replication stream presents its ticket: Authorization: Bearer <ticket>',
    );
  return m[1]!;
}

export function replicaHandlers(store: ReplicaStore): Handlers<typeof agentReplicaRoutes> {
  return {
    prepareReceive: async (req) => store.prepare(req.params.id, req.body),
    replicaStatus: async (req) => store.status(req.params.id, req.body.pool),
    prunePoints: async (req) => store.prune(req.params.id, req.body.pool, req.body.keep),
    lendPoint: async (req) => store.lend(req.params.id, req.params.point, req.body),
    adoptPoint: async (req) => store.adopt(req.params.id, req.body),
    removeReplica: async (req) => {
      await store.remove(req.params.id, req.body.pool);
      return { ok: true as const };
    },
    receiveReplica: async (req) => {
      try {
        if (!(req.body instanceof Readable))
          throw new TernError('unsupported_media_type', 'send the stream as application/octet-stream');
        return await receivePoint(store, req.params.id, ticketOf(req.headers.authorization), req.body);
      } catch (err) {
        // The sender is still writing: read the rest away so it sees this answer, not a reset.
        discardUnreadBody(req.raw);
        throw err;
      }
    },
  };
}
