/**
 * The agent calls of a migration that answer newline-delimited JSON progress (the source's
 * send, a disk move): followed to their `done` or `error` line. Aborting the signal closes
 * the connection, which the agent takes as "cancel": the VM stays where it was.
 */
import { TernError } from '../../errors.ts';
import type { MigrateRequest, MigrationReport, MoveDiskRequest } from '../../wire/agent.ts';
import type { agentRoutes } from '../../wire/agent-routes.ts';
import { followRoute } from './agent-stream.ts';
import type { AgentTransport } from './agent-transport.ts';

export type MigrationDone = Extract<MigrationReport, { type: 'done' }>;

/** The agent sends a line at least every second; this much silence means it is gone. */
const silenceMs = 30_000;

/**
 * Follows a migration's or disk move's progress to its `done` report; an `error` line is
 * thrown as the agent's error.
 */
export function followOnAgent(
  t: AgentTransport,
  r: typeof agentRoutes.migrate | typeof agentRoutes.moveDisk,
  id: string,
  body: MigrateRequest | MoveDiskRequest,
  onReport: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<MigrationDone> {
  const stream = { maxLine: 64 * 1024, silenceMs, signal, during: 'the migration' };
  return followRoute(t, r, { params: { id }, body }, stream, (r) => {
    if (r.type === 'error') {
      throw TernError.fromBody(
        { error: { code: r.code, message: r.message } },
        'the migration failed on the host',
      );
    }
    onReport(r);
    return r.type === 'done' ? r : undefined;
  });
}
