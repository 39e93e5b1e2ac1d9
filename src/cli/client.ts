/** The CLI's API client: the manager URL and token from the config (or TERN_URL/TERN_TOKEN). */
import fs from 'node:fs';
import { cliConfigPath } from '../allinone/config.ts';
import { TernError } from '../errors.ts';
import { requestJson } from '../http/json-client.ts';
import type { ManagerEvent } from '../wire/event.ts';

export class ApiClient {
  readonly url: string;
  readonly #token: string;

  constructor(url: string, token: string) {
    this.url = url.replace(/\/$/, '');
    this.#token = token;
  }

  static fromEnvironment(): ApiClient {
    if (process.env.TERN_URL && process.env.TERN_TOKEN)
      return new ApiClient(process.env.TERN_URL, process.env.TERN_TOKEN);
    const file = cliConfigPath();
    let config: { url?: unknown; token?: unknown };
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
    return new ApiClient(config.url, config.token);
  }

  request<T>(method: string, path: string, body?: unknown): Promise<T> {
    return requestJson<T>(`${this.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.#token}` },
      body,
      timeoutMs: 120_000,
      unreachable: (why) => `cannot reach the Tern manager at ${this.url} (${why}); is it running? (tern up)`,
      peer: 'the manager',
    });
  }

  /** Sends `length` bytes of `body` as application/octet-stream, streamed; the answer is JSON. */
  async upload<T>(
    method: string,
    path: string,
    body: ReadableStream<Uint8Array>,
    length: number,
  ): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#token}`,
          'content-type': 'application/octet-stream',
          'content-length': String(length),
        },
        body,
        duplex: 'half',
      } as RequestInit);
    } catch (err) {
      const why = ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
      throw new TernError('unavailable', `the upload to the Tern manager at ${this.url} failed (${why})`);
    }
    const text = await res.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      throw new TernError('protocol_error', `the manager sent a non-JSON reply (${res.status})`);
    }
    if (!res.ok) throw TernError.fromBody(json, `the manager answered ${res.status}`);
    return json as T;
  }

  /** Follows the event stream until `signal` aborts. */
  async events(query: string, onEvent: (e: ManagerEvent) => void, signal: AbortSignal): Promise<void> {
    const res = await fetch(`${this.url}/api/v1/events?${query}`, {
      headers: { authorization: `Bearer ${this.#token}` },
      signal,
    });
    if (!res.ok || !res.body) throw new TernError('unavailable', `event stream answered ${res.status}`);
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
