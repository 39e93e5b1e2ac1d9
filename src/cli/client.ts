/**
 * The CLI's API client: the manager URL, token and trusted CA from the config (or TERN_URL,
 * TERN_TOKEN and TERN_CA). The API speaks HTTPS only; the manager must present a certificate
 * the recorded CA signed for the address it is reached at.
 */
import fs from 'node:fs';
import { cliConfigPath } from '../allinone/config.ts';
import { rootCause, TernError, unreachable } from '../errors.ts';
import { requestJson } from '../http/json-client.ts';
import { sendUpload } from '../http/upload.ts';
import { tlsFetch } from '../pki/identity.ts';
import { eventRoutes } from '../wire/api/events.ts';
import { type CallArgs, callRoute, pathOfCall } from '../wire/api-client.ts';
import type { ManagerEvent } from '../wire/event.ts';
import type { CallOf, ReplyOf, Route } from '../wire/route.ts';

/** Errors of a certificate chain or name that the CLI does not trust. */
const untrustedCodes = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Why the manager at `url` could not be used, for a person: an untrusted certificate is named as such. */
export function unreachableManager(url: string, why: string, cause: Error): string {
  const code = (cause as { code?: string }).code;
  if ((code && untrustedCodes.has(code)) || /certificate/i.test(why))
    return `the manager at ${url} presented a certificate this CLI does not trust (${why}); give the CA that signed it with TERN_CA=FILE or "tern login --ca FILE" (the CA of "tern up" is recorded in its CLI config)`;
  if (url.startsWith('http:'))
    return `cannot reach the Tern manager at ${url} (${why}); the API speaks HTTPS only: use https://`;
  return `cannot reach the Tern manager at ${url} (${why}); is it running? (tern up)`;
}

export class ApiClient {
  readonly url: string;
  /** The CA (PEM) the manager's certificate must come from; null: the system's CAs. */
  readonly ca: string | null;
  /** A fetch that trusts only `ca` (or the system's CAs) and checks the manager's name. */
  readonly fetch: (url: string, init?: RequestInit) => Promise<Response>;
  readonly #token: string;

  constructor(url: string, token: string, ca: string | null = null) {
    this.url = url.replace(/\/$/, '');
    this.ca = ca;
    this.#token = token;
    this.fetch = tlsFetch(null, { ca: ca ?? undefined, checkName: true });
  }

  static fromEnvironment(): ApiClient {
    if (process.env.TERN_URL && process.env.TERN_TOKEN)
      return new ApiClient(process.env.TERN_URL, process.env.TERN_TOKEN, caFromEnvironment());
    const file = cliConfigPath();
    let config: { url?: unknown; token?: unknown; ca?: unknown };
    try {
      config = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch {
      throw new TernError(
        'unavailable',
        `no CLI config at ${file}: start Tern with "tern up" or set TERN_URL and TERN_TOKEN`,
      );
    }
    if (typeof config.url !== 'string' || typeof config.token !== 'string') {
      throw new TernError('invalid_request', `${file} needs "url" and "token"`);
    }
    const ca = caFromEnvironment() ?? (typeof config.ca === 'string' ? config.ca : null);
    return new ApiClient(config.url, config.token, ca);
  }

  /** Calls a declared route (wire/api/): its parameters, query and body in, its answer typed. */
  call<const R extends Route>(r: R, ...input: CallArgs<R>): Promise<ReplyOf<R>> {
    return callRoute((method, path, body) => this.request(method, path, body), r, ...input);
  }

  /** As call, waiting up to `timeoutMs` for the answer (a guest command given a long timeout). */
  callWithin<const R extends Route>(timeoutMs: number, r: R, ...input: CallArgs<R>): Promise<ReplyOf<R>> {
    return callRoute((method, path, body) => this.request(method, path, body, timeoutMs), r, ...input);
  }

  request<T>(method: string, path: string, body?: unknown, timeoutMs = 120_000): Promise<T> {
    return requestJson<T>(`${this.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#token}` },
      body,
      timeoutMs,
      unreachable: (why, cause) => unreachableManager(this.url, why, cause),
      peer: 'the manager',
      fetch: this.fetch,
    });
  }

  /** A request that never reached the manager, said as such (an untrusted certificate named). */
  #unreachable(err: unknown, prefix = ''): TernError {
    return unreachable(err, (why) => `${prefix}${unreachableManager(this.url, why, rootCause(err))}`);
  }

  /** Sends `length` bytes of `body` to an upload route, streamed; the answer is JSON. */
  async upload<const R extends Route>(
    r: R,
    input: CallOf<R>,
    body: ReadableStream<Uint8Array>,
    length: number,
  ): Promise<ReplyOf<R>> {
    let res: Response;
    try {
      res = await sendUpload(this.fetch, `${this.url}${pathOfCall(r, input)}`, {
        method: r.method,
        headers: { authorization: `Bearer ${this.#token}` },
        body,
        length,
      });
    } catch (err) {
      throw this.#unreachable(err, 'the upload failed: ');
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      throw new TernError('protocol_error', `the manager sent a non-JSON reply (${res.status})`);
    }
    if (!res.ok) throw TernError.fromBody(json, `the manager answered ${res.status}`);
    return json as ReplyOf<R>;
  }

  /** Calls a route whose answer is bytes (application/octet-stream), read whole. */
  async callBytes<const R extends Route>(r: R, input: CallOf<R>): Promise<Buffer> {
    let res: Response;
    try {
      res = await this.fetch(`${this.url}${pathOfCall(r, input)}`, {
        method: r.method,
        headers: { authorization: `Bearer ${this.#token}`, 'content-type': 'application/json' },
        body: JSON.stringify((input as { body?: unknown }).body),
      });
    } catch (err) {
      throw this.#unreachable(err);
    }
    if (!res.ok) throw await managerError(res);
    return Buffer.from(await res.arrayBuffer());
  }

  /** A route whose answer is a file (application/octet-stream with a Content-Length), streamed. */
  async download<const R extends Route>(
    r: R,
    input: CallOf<R>,
  ): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
    let res: Response;
    try {
      res = await this.fetch(`${this.url}${pathOfCall(r, input)}`, {
        method: r.method,
        headers: { authorization: `Bearer ${this.#token}` },
      });
    } catch (err) {
      throw this.#unreachable(err);
    }
    if (!res.ok) throw await managerError(res);
    const length = Number(res.headers.get('content-length'));
    if (!res.body || !Number.isSafeInteger(length))
      throw new TernError('protocol_error', 'the manager sent the file without a length');
    return { body: res.body, length };
  }

  /** Follows the event stream until `signal` aborts; `onOpen` once every later event will be seen. */
  async events(
    query: string,
    onEvent: (e: ManagerEvent) => void,
    signal: AbortSignal,
    onOpen?: () => void,
  ): Promise<void> {
    let res: Response;
    try {
      res = await this.fetch(`${this.url}${eventRoutes.stream.path}?${query}`, {
        headers: { authorization: `Bearer ${this.#token}` },
        signal,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      throw this.#unreachable(err);
    }
    if (!res.ok || !res.body) throw new TernError('unavailable', `event stream answered ${res.status}`);
    onOpen?.();
    const decoder = new TextDecoder();
    let buffer = '';
    for await (const chunk of res.body) {
      buffer += decoder.decode(chunk as Uint8Array, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        end = buffer.indexOf('\n\n');
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (data) onEvent(JSON.parse(data) as ManagerEvent);
      }
    }
  }
}

/** The manager's error answer as the TernError it describes (or says the answer was not ours). */
async function managerError(res: Response): Promise<TernError> {
  let json: unknown = null;
  try {
    json = JSON.parse(await res.text());
  } catch {
    // fromBody says the answer was not ours.
  }
  return TernError.fromBody(json, `the manager answered ${res.status}`);
}

/** TERN_CA: a PEM file with the CA to trust, as curl's --cacert. */
export function caFromEnvironment(): string | null {
  const file = process.env.TERN_CA;
  if (!file) return null;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new TernError('invalid_request', `TERN_CA: cannot read ${file} (${(err as Error).message})`);
  }
}
