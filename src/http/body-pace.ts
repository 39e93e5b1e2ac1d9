/**
 * Cuts clients that send a request body too slowly. A body trickled a byte every ten seconds
 * would otherwise hold its connection, and whatever the request holds (an upload holds its
 * image name), for ever. A JSON body must arrive whole within a deadline; any body, an upload
 * too, must keep arriving: at least `minBytes` in every `windowMs` while the server waits for it
 * (when the server is the slow one, its buffers hold unread data, and that is not the client's
 * fault). The socket's own byte count is watched, so the body's reader is left alone.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';

export interface BodyPace {
  /** The whole body within this many ms of the headers; null: no deadline (an upload). */
  deadlineMs: number | null;
  /** Bytes that must arrive in every window while the server waits for them. */
  minBytes: number;
  windowMs: number;
}

export interface BodyPaces {
  json: BodyPace;
  upload: BodyPace;
}

/** 256 KiB of JSON in 30 s is 9 KiB/s; an upload must keep 64 KiB per 30 s (about 2 KiB/s). */
export const defaultBodyPaces: BodyPaces = {
  json: { deadlineMs: 30_000, minBytes: 1024, windowMs: 10_000 },
  upload: { deadlineMs: null, minBytes: 64 * 1024, windowMs: 30_000 },
};

/** Watches `req`'s body; when it is too slow, says why and closes the connection. */
export function watchBodyPace(req: IncomingMessage, pace: BodyPace, onCut: (why: string) => void): void {
  if (req.complete) return;
  const socket = req.socket;
  const started = Date.now();
  let seen = socket.bytesRead;
  const stop = () => clearInterval(timer);
  const cut = (why: string) => {
    stop();
    onCut(why);
    socket.destroy();
  };
  const timer = setInterval(
    () => {
      if (req.complete || socket.destroyed) return stop();
      if (pace.deadlineMs !== null && Date.now() - started >= pace.deadlineMs)
        return cut(`the request body did not arrive within ${pace.deadlineMs / 1000} s`);
      const read = socket.bytesRead - seen;
      seen = socket.bytesRead;
      if (read < pace.minBytes && req.readableLength === 0)
        cut(`the request body arrived slower than ${pace.minBytes} bytes in ${pace.windowMs / 1000} s`);
    },
    Math.min(pace.windowMs, pace.deadlineMs ?? pace.windowMs),
  ).unref();
  req.once('end', stop);
  req.once('close', stop);
}

/** Every request with a body is watched: uploads (application/octet-stream) at their pace. */
export function installBodyPace(app: FastifyInstance, paces: () => BodyPaces = () => defaultBodyPaces): void {
  app.addHook('onRequest', (req, _reply, done) => {
    const raw = req.raw;
    const hasBody =
      raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0;
    if (hasBody) {
      const upload = (raw.headers['content-type'] ?? '').startsWith('application/octet-stream');
      const p = paces();
      watchBodyPace(raw, upload ? p.upload : p.json, (why) =>
        req.log.info({ ip: req.ip, url: req.url }, why),
      );
    }
    done();
  });
}
