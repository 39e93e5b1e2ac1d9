/**
 * The one streamed upload: the bytes of `body` sent as application/octet-stream as they come,
 * never held whole in memory (fetch needs `duplex: 'half'` for a streamed body); `length` when
 * known ahead (an image), else chunked (a replication stream, made as it goes). Rejects
 * as fetch does when the peer cannot be reached; the caller reads the answer, since what a
 * failure means depends on who was asked.
 */
export interface Upload {
  method: string;
  headers: Record<string, string>;
  body: ReadableStream<Uint8Array>;
  length?: number;
  signal?: AbortSignal;
}

export function sendUpload(
  fetch: (url: string, init?: RequestInit) => Promise<Response>,
  url: string,
  u: Upload,
): Promise<Response> {
  return fetch(url, {
    method: u.method,
    headers: {
      ...u.headers,
      'content-type': 'application/octet-stream',
      ...(u.length === undefined ? {} : { 'content-length': String(u.length) }),
    },
    body: u.body,
    duplex: 'half',
    signal: u.signal,
  } as RequestInit);
}
