/**
 * After an early answer (a refusal) to a request whose body is still arriving. Closing the
 * connection at once would reset it while the client writes, and the client would see the
 * reset instead of the answer; so the rest is read and discarded, up to a bound in bytes and
 * time, past which the connection is closed after all.
 */
import type { IncomingMessage } from 'node:http';

export function discardUnreadBody(req: IncomingMessage, maxBytes = 64 * 1024 * 1024, maxMs = 30_000): void {
  if (req.complete || req.destroyed) return;
  let seen = 0;
  const cut = () => req.socket?.destroy();
  const timer = setTimeout(cut, maxMs);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > maxBytes) cut();
  });
  req.once('close', () => clearTimeout(timer));
  req.resume();
}
