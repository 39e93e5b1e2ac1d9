/**
 * The one follower of an agent answer that streams newline-delimited JSON: an image import,
 * a migration, a disk move, the event stream. Lines are bounded in length, and a stream
 * silent for longer than its limit counts as lost (the agent writes at least every few
 * seconds, heartbeats included). Closing the connection (aborting `signal`) is how the
 * manager cancels: the agent takes a closed stream as "stop".
 */
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { ndjson } from '../../http/ndjson.ts';
import { type LineOf, type Method, pathOf, type Route } from '../../wire/route.ts';
import { type AgentTransport, agentUnreachable, errorOf } from './agent-transport.ts';

export interface AgentStream {
  method: Method;
  path: string;
  /** Sent as JSON; none for a GET. */
  body?: unknown;
  /** The longest line accepted, in bytes. */
  maxLine: number;
  /** This long without a byte and the agent counts as gone. */
  silenceMs: number;
  signal: AbortSignal;
  /** What the stream carries, for errors: "the import", "the migration". */
  during: string;
}

/**
 * Hands each line to `onLine` until it returns a value (the stream's last line: `done`),
 * which this resolves with, closing the connection. Rejects with a TernError: what `onLine`
 * throws (the agent's `error` line), the agent's error answer, `cancelled` when `signal`
 * aborted, `unavailable` when the agent cannot be reached, went silent or ended the stream
 * before its last line.
 */
export async function followAgentStream<T>(
  t: AgentTransport,
  s: AgentStream,
  onLine: (value: unknown) => T | undefined,
): Promise<T> {
  const silence = new AbortController();
  let watchdog: NodeJS.Timeout | undefined;
  const feed = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => silence.abort(), s.silenceMs);
  };
  const lost = (err: unknown) =>
    silence.signal.aborted && !s.signal.aborted
      ? new TernError('unavailable', `host agent at ${t.url} went silent during ${s.during}`)
      : agentUnreachable(t.url, err, s.signal);
  try {
    feed();
    let res: Response;
    try {
      res = await t.fetch(`${t.url}${s.path}`, {
        method: s.method,
        headers: s.body === undefined ? t.headers : { ...t.headers, 'content-type': 'application/json' },
        body: s.body === undefined ? undefined : JSON.stringify(s.body),
        signal: AbortSignal.any([s.signal, silence.signal]),
      });
    } catch (err) {
      throw lost(err);
    }
    if (!res.ok) throw await errorOf(res, 'host agent');
    if (!res.body) throw new TernError('protocol_error', `host agent sent no report of ${s.during}`);
    feed();
    try {
      // Returning from this loop closes the connection.
      for await (const value of ndjson(res.body, s.maxLine, feed)) {
        const last = onLine(value);
        if (last !== undefined) return last;
      }
    } catch (err) {
      if (err instanceof TernError) throw err;
      throw lost(err);
    }
    throw new TernError('unavailable', `host agent at ${t.url} stopped answering during ${s.during}`);
  } finally {
    clearTimeout(watchdog);
  }
}

/** A route of the agent protocol that answers newline-delimited JSON (src/wire/agent-routes.ts). */
export type StreamRoute = Route & { lines: TSchema };

/**
 * Follows a declared streaming route: method and path from its declaration, and every line
 * checked against the declared line schema before `onLine` sees it.
 */
export function followRoute<R extends StreamRoute, T>(
  t: AgentTransport,
  r: R,
  req: { params?: Record<string, unknown>; body?: unknown },
  s: Omit<AgentStream, 'method' | 'path' | 'body'>,
  onLine: (line: LineOf<R>) => T | undefined,
): Promise<T> {
  const stream = { ...s, method: r.method, path: pathOf(r, req.params), body: req.body };
  return followAgentStream(t, stream, (value) => {
    if (!Value.Check(r.lines, value))
      throw new TernError('protocol_error', `host agent sent a line that is not part of ${s.during}`);
    return onLine(value as LineOf<R>);
  });
}
