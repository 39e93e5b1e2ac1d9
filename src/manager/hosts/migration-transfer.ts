/**
 * The agent calls of a migration that answer newline-delimited JSON progress (the source's
 * send, a disk move): followed to their `done` or `error` line. Aborting the signal closes
 * the connection, which the agent takes as "cancel": the VM stays where it was.
 */
import { TernError } from '../../errors.ts';
import { ndjson } from '../../http/ndjson.ts';
import type { MigrationReport } from '../../wire/agent.ts';
import type { AgentTransport } from './agent-client.ts';
import { errorOf, unreachable } from './image-transfer.ts';

export type MigrationDone = Extract<MigrationReport, { type: 'done' }>;

/** The agent sends a line at least every second; this much silence means it is gone. */
const silenceMs = 30_000;

const reportTypes = new Set(['progress', 'done', 'error']);

export async function followOnAgent(
  { url, fetch, headers }: AgentTransport,
  path: string,
  body: unknown,
  onReport: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<MigrationDone> {
  const silence = new AbortController();
  let watchdog: NodeJS.Timeout | undefined;
  const feed = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => silence.abort(), silenceMs);
  };
  const both = AbortSignal.any([signal, silence.signal]);
  const lost = (err: unknown) =>
    silence.signal.aborted && !signal.aborted
      ? new TernError('unavailable', `host agent at ${url} went silent during the migration`)
      : unreachable(url, err, signal);
  try {
    feed();
    let res: Response;
    try {
      res = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: both,
      });
    } catch (err) {
      throw lost(err);
    }
    if (!res.ok) throw await errorOf(res, 'host agent');
    if (!res.body) throw new TernError('protocol_error', 'host agent sent no migration report');
    try {
      for await (const value of ndjson(res.body, 64 * 1024, feed)) {
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
        if (r.type === 'done') return r;
      }
    } catch (err) {
      if (err instanceof TernError) throw err;
      throw lost(err);
    }
    throw new TernError('unavailable', `host agent at ${url} stopped answering during the migration`);
  } finally {
    clearTimeout(watchdog);
  }
}
