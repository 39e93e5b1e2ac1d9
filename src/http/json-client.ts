/** One JSON-over-HTTP request with a deadline; every failure becomes a TernError. */
import { rootCause, TernError, unreachable } from '../errors.ts';

export interface JsonRequest {
  method: string;
  headers: Record<string, string>;
  body?: unknown;
  timeoutMs: number;
  /** Says who could not be reached, and what to do about it (`cause`: the network error). */
  unreachable: (why: string, cause: Error) => string;
  /** Names the peer in protocol errors ("the manager", "host agent at …"). */
  peer: string;
  /** The fetch to use (a mutual-TLS one for agents); the global one by default. */
  fetch?: (url: string, init?: RequestInit) => Promise<Response>;
}

export async function requestJson<T>(url: string, r: JsonRequest): Promise<T> {
  let res: Response;
  try {
    res = await (r.fetch ?? fetch)(url, {
      method: r.method,
      headers: { ...r.headers, ...(r.body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: r.body === undefined ? undefined : JSON.stringify(r.body),
      signal: AbortSignal.timeout(r.timeoutMs),
    });
  } catch (err) {
    const timedOut = (err as Error).name === 'TimeoutError';
    throw unreachable(err, (why) =>
      r.unreachable(timedOut ? `no answer within ${r.timeoutMs} ms` : why, rootCause(err)),
    );
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    throw new TernError('protocol_error', `${r.peer} sent a non-JSON reply (${res.status})`);
  }
  if (!res.ok) throw TernError.fromBody(json, `${r.peer} answered ${res.status}`);
  return json as T;
}
