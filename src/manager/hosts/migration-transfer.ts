/**
 * The agent calls of a migration that answer newline-delimited JSON progress (the source's
 * send, a disk move): followed to their `done` or `error` line. Aborting the signal closes
 * the connection, which the agent takes as "cancel": the VM stays where it was.
 */
import { TernError } from '../../errors.ts';
import type { MigrationReport } from '../../wire/agent.ts';
import { followAgentStream } from './agent-stream.ts';
import type { AgentTransport } from './agent-transport.ts';

export type MigrationDone = Extract<MigrationReport, { type: 'done' }>;

/** The agent sends a line at least every second; this much silence means it is gone. */
const silenceMs = 30_000;

const reportTypes = new Set(['progress', 'done', 'error']);

export function followOnAgent(
  t: AgentTransport,
  path: string,
  body: unknown,
  onReport: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<MigrationDone> {
  const stream = {
    method: 'POST',
    path,
    body,
    maxLine: 64 * 1024,
    silenceMs,
    signal,
    during: 'the migration',
  } as const;
  return followAgentStream(t, stream, (value) => {
    const r = value as MigrationReport;
    if (typeof r !== 'object' || r === null || !reportTypes.has(r.type)) {
      throw new TernError('protocol_error', 'host agent sent a line that is not a migration report');
    }
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
