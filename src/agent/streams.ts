/**
 * The agent's newline-delimited JSON answers (`application/x-ndjson`): the event stream, an
 * image import's progress, and a migration's or disk move's progress. Each takes over the
 * raw response; the caller closing its connection is how a manager cancels.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { asTernError, type TernError } from '../errors.ts';
import { type AgentEvent, type AgentVm, agentProtocolVersion, type MigrationReport } from '../wire/agent.ts';
import type { TransferProgress } from '../wire/backup.ts';
import type { ImportEvent } from '../wire/image.ts';
import type { HypervisorDriver } from './driver.ts';

/** Aborts when the caller closes its connection before the answer is complete. */
export function callerGone(res: ServerResponse): AbortSignal {
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  return gone.signal;
}

function startLines(reply: FastifyReply): ServerResponse {
  reply.hijack();
  const res = reply.raw;
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  return res;
}

/**
 * A hello, then every VM change, with a heartbeat every 5 s so the manager notices a dead
 * connection.
 */
export function eventStream(
  driver: HypervisorDriver,
  req: Pick<FastifyRequest, 'raw'>,
  reply: FastifyReply,
): void {
  const res = startLines(reply);
  const send = (e: AgentEvent) => {
    res.write(`${JSON.stringify(e)}\n`);
    // A manager that stopped reading gets cut off rather than buffered for without end.
    if (res.writableLength > 4 * 1024 * 1024) res.destroy();
  };
  send({ type: 'hello', protocol: agentProtocolVersion, time: new Date().toISOString() });
  for (const vm of driver.list()) send({ type: 'vm', vm });
  const vmListener = (vm: AgentVm) => send({ type: 'vm', vm });
  const goneListener = (id: string) => send({ type: 'vm.gone', id });
  driver.events.on('vm', vmListener);
  driver.events.on('gone', goneListener);
  const beat = setInterval(() => send({ type: 'heartbeat', time: new Date().toISOString() }), 5000);
  req.raw.on('close', () => {
    clearInterval(beat);
    driver.events.off('vm', vmListener);
    driver.events.off('gone', goneListener);
  });
}

/**
 * A piece of work answering its lines: `work` sends them as it goes and gives the last one;
 * a failure becomes the route's error line. `beat` keeps the stream from falling silent.
 * The manager gone (crashed, or the task cancelled) aborts the work's signal.
 */
async function workLines<L>(
  req: Pick<FastifyRequest, 'log' | 'raw'>,
  reply: FastifyReply,
  o: {
    send: (res: ServerResponse, line: L) => void;
    beat: (send: (line: L) => void) => void;
    beatMs: number;
  },
  errorLine: (e: TernError) => L,
  work: (send: (line: L) => void, signal: AbortSignal) => Promise<L>,
): Promise<void> {
  const res = startLines(reply);
  const send = (line: L) => o.send(res, line);
  const gone = callerGone(res);
  const beat = setInterval(() => o.beat(send), o.beatMs);
  try {
    send(await work(send, gone));
  } catch (err) {
    const e = asTernError(err);
    if (e.status >= 500) req.log.error({ err }, e.message);
    send(errorLine(e));
  } finally {
    clearInterval(beat);
    res.end();
  }
}

const write = (res: ServerResponse, line: unknown) => {
  if (!res.destroyed) res.write(`${JSON.stringify(line)}\n`);
};

/** An import's steps and progress, a heartbeat every 5 s, then `done` or `error`. */
export function importStream(
  req: Pick<FastifyRequest, 'log' | 'raw'>,
  reply: FastifyReply,
  work: (send: (e: ImportEvent) => void, signal: AbortSignal) => Promise<ImportEvent>,
): Promise<void> {
  const o = {
    send: write,
    beat: (send: (e: ImportEvent) => void) => send({ type: 'heartbeat' }),
    beatMs: 5000,
  };
  return workLines<ImportEvent>(
    req,
    reply,
    o,
    (e) => ({ type: 'error', error: { code: e.code, message: e.message } }),
    work,
  );
}

/** Migration progress at least every second, then the `done` report or an `error` line. */
export function progressStream(
  req: Pick<FastifyRequest, 'log' | 'raw'>,
  reply: FastifyReply,
  work: (progress: (r: MigrationReport) => void, signal: AbortSignal) => Promise<MigrationReport>,
): Promise<void> {
  let sentAt = 0;
  let latest: MigrationReport | null = null;
  const o = {
    send: (res: ServerResponse, r: MigrationReport) => {
      if (r.type === 'progress') latest = r;
      sentAt = Date.now();
      write(res, r);
    },
    // A line at least every second, also while QEMU is set up or a cancel winds down.
    beat: (send: (r: MigrationReport) => void) => {
      if (latest && Date.now() - sentAt >= 900) send(latest);
    },
    beatMs: 1000,
  };
  return workLines<MigrationReport>(
    req,
    reply,
    o,
    (e) => ({ type: 'error', code: e.code, message: e.message }),
    work,
  );
}

/** The lines of a datastore operation (backup, restore, verify, gc): progress, the rest, an error. */
type TransferLine =
  | TransferProgress
  | { type: 'done' | 'log' }
  | { type: 'error'; code: string; message: string; details?: Record<string, unknown> };

/**
 * A datastore operation's progress, repeated at least every 5 s while it waits (a freeze, a
 * slow disk), its other lines, then `done` or an `error` line carrying the error's details.
 */
export function transferStream<L extends TransferLine>(
  req: Pick<FastifyRequest, 'log' | 'raw'>,
  reply: FastifyReply,
  work: (send: (line: L) => void, signal: AbortSignal) => Promise<L>,
): Promise<void> {
  let sentAt = 0;
  let latest: L | null = null;
  const o = {
    send: (res: ServerResponse, line: L) => {
      if (line.type === 'progress') latest = line;
      sentAt = Date.now();
      write(res, line);
    },
    beat: (send: (line: L) => void) => {
      if (Date.now() - sentAt < 4500) return;
      send(
        latest ??
          ({ type: 'progress', item: '', doneBytes: 0, totalBytes: 0, writtenBytes: 0, bytesPerS: 0 } as L),
      );
    },
    beatMs: 2000,
  };
  return workLines<L>(
    req,
    reply,
    o,
    (e) => ({ type: 'error', code: e.code, message: e.message, details: e.details }) as L,
    work,
  );
}
