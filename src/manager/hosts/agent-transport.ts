/**
 * How the manager reaches one agent (its address and a mutual-TLS fetch bound to that host),
 * and what a failed exchange with it becomes.
 */
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { TernError, unreachable } from '../../errors.ts';
import { requestJson } from '../../http/json-client.ts';
import { type CallOf, pathOf, type ReplyOf, type Route } from '../../wire/route.ts';

export interface AgentTransport {
  url: string;
  fetch: (url: string, init?: RequestInit) => Promise<Response>;
  headers: Record<string, string>;
}

/** An agent's error answer as the TernError it describes. */
export async function errorOf(res: Response, peer: string): Promise<TernError> {
  const text = await res.text().catch(() => '');
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Not our error shape; fromBody says so.
  }
  return TernError.fromBody(body, `${peer} answered ${res.status}`);
}

/** A failed request to an agent: cancelled by us, or the agent could not be reached. */
export function agentUnreachable(url: string, err: unknown, signal?: AbortSignal): TernError {
  if (signal?.aborted) return new TernError('cancelled', 'the transfer was cancelled');
  return unreachable(err, (why) => `host agent at ${url} unreachable: ${why}`);
}

/** A JSON answer of an agent on a declared route, checked against the route's reply schema. */
export function checkedReply<R extends Route>(url: string, r: R, answer: unknown): ReplyOf<R> {
  const schema: TSchema | undefined = r.reply[200];
  if (schema && !Value.Check(schema, answer)) {
    const first = Value.Errors(schema, answer)[0];
    throw new TernError(
      'protocol_error',
      `host agent at ${url} answered ${r.method} ${r.path} with what the protocol does not allow: ${first?.instancePath || '/'} ${first?.message ?? ''}`,
    );
  }
  return answer as ReplyOf<R>;
}

/** One request on a plain route of the agent protocol; the answer is checked against its schema. */
export async function callAgent<R extends Route>(
  t: AgentTransport,
  r: R,
  req: CallOf<R>,
  timeoutMs = 60_000,
): Promise<ReplyOf<R>> {
  // CallOf is an intersection that holds only what the route declares.
  const { params, query, body } = req as {
    params?: Record<string, unknown>;
    query?: Record<string, unknown>;
    body?: unknown;
  };
  const answer = await requestJson<unknown>(`${t.url}${pathOf(r, params, query)}`, {
    method: r.method,
    headers: t.headers,
    body,
    fetch: t.fetch,
    timeoutMs,
    unreachable: (why) => `host agent at ${t.url} unreachable: ${why}`,
    peer: 'host agent',
  });
  return checkedReply(t.url, r, answer);
}

/** A route answering bytes (`octets`): the agent's answer, its body not read yet. */
export async function postForBytes(
  t: AgentTransport,
  r: Route,
  params: Record<string, string>,
  body: unknown,
  timeoutMs: number,
): Promise<Response> {
  try {
    const res = await t.fetch(`${t.url}${pathOf(r, params)}`, {
      method: r.method,
      headers: { ...t.headers, 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw await errorOf(res, 'host agent');
    return res;
  } catch (err) {
    throw agentUnreachable(t.url, err);
  }
}
