/** The one logger of manager and agent processes: JSON lines on stderr (pino, as Fastify uses). */
import type { FastifyBaseLogger } from 'fastify';
import pino from 'pino';

export type Logger = FastifyBaseLogger;

export function createLogger(name: string, level = process.env.TERN_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level }, pino.destination(2));
}

/** HTTP servers log every request at info; ours keep only warnings and errors. */
export function quietRequests(log: Logger): Logger {
  return log.child({}, { level: 'warn' });
}
