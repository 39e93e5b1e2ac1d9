/**
 * The agent calls that move or read image data: an upload streamed through to a host's
 * staging area, an import whose answer streams its progress (newline-delimited JSON), a
 * stored image streamed back, and a stored image re-hashed.
 */
import { TernError } from '../../errors.ts';
import { sendUpload } from '../../http/upload.ts';
import { agentRoutes } from '../../wire/agent-routes.ts';
import type { ImportedImage, ImportImageRequest, UploadResult, VolumeDigest } from '../../wire/image.ts';
import { pathOf } from '../../wire/route.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { followRoute } from './agent-stream.ts';
import { type AgentTransport, agentUnreachable, checkedReply, errorOf } from './agent-transport.ts';

export interface ImportProgress {
  signal: AbortSignal;
  step(name: string): void;
  progress(percent: number): void;
}

/** The agent sends a line at least every 5 s; this much silence means it is gone. */
const importSilenceMs = 60_000;

export async function uploadToAgent(
  { url, fetch, headers }: AgentTransport,
  ref: VolumeRef,
  body: ReadableStream<Uint8Array>,
  length: number,
  signal?: AbortSignal,
): Promise<UploadResult> {
  let res: Response;
  try {
    res = await sendUpload(fetch, `${url}${pathOf(agentRoutes.upload, {}, ref)}`, {
      method: agentRoutes.upload.method,
      headers,
      body,
      length,
      signal,
    });
  } catch (err) {
    throw agentUnreachable(url, err, signal);
  }
  if (!res.ok) throw await errorOf(res, 'host agent');
  return checkedReply(url, agentRoutes.upload, await res.json());
}

export async function importOnAgent(
  t: AgentTransport,
  req: ImportImageRequest,
  p: ImportProgress,
): Promise<ImportedImage> {
  const stream = { maxLine: 1024 * 1024, silenceMs: importSilenceMs, signal: p.signal, during: 'the import' };
  return followRoute(t, agentRoutes.importImage, { body: req }, stream, (e) => {
    if (e.type === 'step') p.step(e.step);
    else if (e.type === 'progress') p.progress(e.percent);
    else if (e.type === 'done') return e.image;
    else if (e.type === 'error') throw TernError.fromBody(e, 'the import failed on the host');
    return undefined;
  });
}

/** A library image's stored bytes as the agent streams them, with their length. */
export async function downloadFromAgent(
  { url, fetch, headers }: AgentTransport,
  ref: VolumeRef,
  signal?: AbortSignal,
): Promise<{ body: ReadableStream<Uint8Array>; length: number }> {
  let res: Response;
  try {
    res = await fetch(`${url}${pathOf(agentRoutes.imageContent, {}, ref)}`, { headers, signal });
  } catch (err) {
    throw agentUnreachable(url, err, signal);
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
    res = await fetch(`${url}${pathOf(agentRoutes.imageDigest, {}, ref)}`, { headers, signal });
  } catch (err) {
    throw agentUnreachable(url, err, signal);
  }
  if (!res.ok) throw await errorOf(res, 'host agent');
  return checkedReply(url, agentRoutes.imageDigest, await res.json());
}
