/**
 * The agent calls that move or read image data: an upload streamed through to a host's
 * staging area, an import whose answer streams its progress (newline-delimited JSON), a
 * stored image streamed back, and a stored image re-hashed.
 */
import { TernError } from '../../errors.ts';
import { ndjson } from '../../http/ndjson.ts';
import type {
  ImportEvent,
  ImportedImage,
  ImportImageRequest,
  UploadResult,
  VolumeDigest,
} from '../../wire/image.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { AgentTransport } from './agent-client.ts';

export interface ImportProgress {
  signal: AbortSignal;
  step(name: string): void;
  progress(percent: number): void;
}

/** The agent sends a line at least every 5 s; this much silence means it is gone. */
const importSilenceMs = 60_000;

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
export function unreachable(url: string, err: unknown, signal?: AbortSignal): TernError {
  if (signal?.aborted) return new TernError('cancelled', 'the transfer was cancelled');
  const e = err as Error;
  return new TernError(
    'unavailable',
    `host agent at ${url} unreachable: ${(e.cause as Error | undefined)?.message ?? e.message}`,
  );
}

export async function uploadToAgent(
  { url, fetch, headers }: AgentTransport,
  ref: VolumeRef,
  body: ReadableStream<Uint8Array>,
  length: number,
  signal?: AbortSignal,
): Promise<UploadResult> {
  let res: Response;
  try {
    res = await fetch(`${url}/agent/v1/uploads?${new URLSearchParams(ref)}`, {
      method: 'PUT',
      headers: {
        ...headers,
        'content-type': 'application/octet-stream',
        'content-length': String(length),
      },
      body,
      duplex: 'half',
      signal,
    } as RequestInit);
  } catch (err) {
    throw unreachable(url, err, signal);
  }
  if (!res.ok) throw await errorOf(res, 'host agent');
  return (await res.json()) as UploadResult;
}

export async function importOnAgent(
  { url, fetch, headers }: AgentTransport,
  req: ImportImageRequest,
  p: ImportProgress,
): Promise<ImportedImage> {
  const silence = new AbortController();
  let watchdog: NodeJS.Timeout | undefined;
  const feed = () => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => silence.abort(), importSilenceMs);
  };
  const signal = AbortSignal.any([p.signal, silence.signal]);
  const lost = (err: unknown) =>
    silence.signal.aborted && !p.signal.aborted
      ? new TernError('unavailable', `host agent at ${url} went silent during the import`)
      : unreachable(url, err, p.signal);
  try {
    feed();
    let res: Response;
    try {
      res = await fetch(`${url}/agent/v1/images/import`, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json' },
        body: JSON.stringify(req),
        signal,
      });
    } catch (err) {
      throw lost(err);
    }
    if (!res.ok) throw await errorOf(res, 'host agent');
    if (!res.body) throw new TernError('protocol_error', 'host agent sent no import report');
    try {
      for await (const value of ndjson(res.body, 1024 * 1024, feed)) {
        const e = value as ImportEvent;
        if (e.type === 'step') p.step(e.step);
        else if (e.type === 'progress') p.progress(e.percent);
        else if (e.type === 'done') return e.image;
        else if (e.type === 'error') throw TernError.fromBody(e, 'the import failed on the host');
      }
    } catch (err) {
      if (err instanceof TernError) throw err;
      throw lost(err);
    }
    throw new TernError('unavailable', `host agent at ${url} stopped answering during the import`);
  } finally {
    clearTimeout(watchdog);
  }
}

/** A library image's stored bytes as the agent streams them, with their length. */
export async function downloadFromAgent(
  { url, fetch, headers }: AgentTransport,
  ref: VolumeRef,
  signal?: AbortSignal,
): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
  let res: Response;
  try {
    res = await fetch(`${url}/agent/v1/images/content?${new URLSearchParams(ref)}`, { headers, signal });
  } catch (err) {
    throw unreachable(url, err, signal);
  }
  if (!res.ok) throw await errorOf(res, 'host agent');
  const length = Number(res.headers.get('content-length'));
  if (!res.body || !Number.isSafeInteger(length))
    throw new TernError('protocol_error', 'host agent sent the image without a length');
  return { body: res.body, length };
}

/** Re-hashes a library image's stored file on its host: as long as reading it takes. */
export async function digestOnAgent(
  { url, fetch, headers }: AgentTransport,
  ref: VolumeRef,
  signal?: AbortSignal,
): Promise<VolumeDigest> {
  let res: Response;
  try {
    res = await fetch(`${url}/agent/v1/images/digest?${new URLSearchParams(ref)}`, { headers, signal });
  } catch (err) {
    throw unreachable(url, err, signal);
  }
  if (!res.ok) throw await errorOf(res, 'host agent');
  return (await res.json()) as VolumeDigest;
}
