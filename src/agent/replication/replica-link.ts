/**
 * The connection from the primary's host to the replica's: one HTTPS POST of the stream to the
 * replica host's receive route, this host presenting its own agent certificate (mutual TLS)
 * and the one-time ticket the replica's host issued for this point, the replica's host checked
 * against the cluster CA (or the CA the target names). The body is pulled as the socket takes
 * it: the stream is never held, only the frame being written.
 */
import { Value } from 'typebox/value';
import { rootCause, TernError, unreachable } from '../../errors.ts';
import { sendUpload } from '../../http/upload.ts';
import { type Identity, tlsFetch } from '../../pki/identity.ts';
import { ReceiveResult, type ReplicaTarget } from '../../wire/replication.ts';

/** Sends `body` to the target; answers what the replica's host committed. */
export type ReplicaLink = (
  target: ReplicaTarget,
  body: AsyncIterable<Buffer>,
  signal: AbortSignal,
) => Promise<ReceiveResult>;

/** The largest answer read from the replica's host (a ReceiveResult is a few hundred bytes). */
const MAX_ANSWER_BYTES = 64 * 1024;

export function replicaLink(identity: Identity): ReplicaLink {
  return async (target, body, signal) => {
    const peer = `the replica's host at ${new URL(target.url).host}`;
    const f = tlsFetch(identity, { ca: target.ca ?? identity.ca });
    const it = body[Symbol.asyncIterator]();
    // What made the body fail (a disk read, a cancel): it says more than the fetch's error.
    let bodyFailed: unknown = null;
    const stream = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          try {
            const r = await it.next();
            if (r.done) controller.close();
            else controller.enqueue(r.value);
          } catch (err) {
            bodyFailed = err;
            controller.error(err);
          }
        },
        async cancel() {
          await it.return?.();
        },
      },
      // Nothing read ahead: a frame is made when the connection takes the previous one.
      { highWaterMark: 0 },
    );
    try {
      let res: Response;
      try {
        res = await sendUpload(f, target.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${target.ticket}` },
          body: stream,
          signal,
        });
      } catch (err) {
        if (bodyFailed) throw bodyFailed;
        if (signal.aborted) throw new TernError('cancelled', 'the replication was cancelled');
        throw unreachable(err, (why) => `${peer} could not be reached: ${why}`);
      }
      const text = await readBounded(res, peer);
      let json: unknown;
      try {
        json = text ? JSON.parse(text) : null;
      } catch {
        throw new TernError('protocol_error', `${peer} sent a non-JSON answer (${res.status})`);
      }
      if (!res.ok) throw TernError.fromBody(json, `${peer} answered ${res.status}`);
      if (!Value.Check(ReceiveResult, json))
        throw new TernError(
          'protocol_error',
          `${peer} answered the stream with something other than its result`,
        );
      return json;
    } catch (err) {
      if (bodyFailed) throw bodyFailed;
      if (signal.aborted && !(err instanceof TernError))
        throw new TernError('cancelled', 'the replication was cancelled');
      if (err instanceof TernError) throw err;
      throw unreachable(err, (why) => `${peer} broke off the stream: ${rootCause(err).message || why}`);
    } finally {
      await it.return?.().catch(() => {});
      await f.close().catch(() => {});
    }
  };
}

async function readBounded(res: Response, peer: string): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res.body ?? []) {
    n += c.length;
    if (n > MAX_ANSWER_BYTES)
      throw new TernError('protocol_error', `${peer} answered more than ${MAX_ANSWER_BYTES} bytes`);
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks).toString('utf8');
}
