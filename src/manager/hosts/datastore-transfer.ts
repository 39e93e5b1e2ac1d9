/**
 * The agent's datastore calls that answer newline-delimited JSON progress (backing a VM up,
 * verify, garbage collection, restoring a disk, a live restore's stream, an offsite copy,
 * replicating a VM): followed to their `done` line, whose result they resolve
 * with; an `error` line is thrown as the agent's error, its details kept (the damaged chunk
 * a restore needed). Aborting the signal closes the connection, which the agent takes as
 * "stop".
 */
import { TernError } from '../../errors.ts';
import type { agentRoutes } from '../../wire/agent-routes.ts';
import type { LineOf } from '../../wire/route.ts';
import { followRoute } from './agent-stream.ts';
import type { AgentTransport } from './agent-transport.ts';

type TransferRoute =
  | typeof agentRoutes.verifyBackups
  | typeof agentRoutes.collectGarbage
  | typeof agentRoutes.restoreDisk
  | typeof agentRoutes.syncDatastore
  | typeof agentRoutes.backupVm
  | typeof agentRoutes.streamLiveRestore
  | typeof agentRoutes.replicateVm;
type ResultOf<R extends TransferRoute> = Extract<LineOf<R>, { type: 'done' }>['result'];
/** The lines before the end: progress, and for a backup its log lines. */
type ReportOf<R extends TransferRoute> = Exclude<LineOf<R>, { type: 'done' | 'error' }>;

/** The agent repeats its progress at least every 5 s, also while it waits; this much silence means it is gone. */
const silenceMs = 30_000;

export function followTransfer<R extends TransferRoute>(
  t: AgentTransport,
  r: R,
  call: { params?: Record<string, string>; body: unknown },
  during: string,
  onReport: (line: ReportOf<R>) => void,
  signal: AbortSignal,
): Promise<ResultOf<R>> {
  const stream = { maxLine: 4 * 1024 * 1024, silenceMs, signal, during };
  return followRoute(t, r, call as never, stream, (line) => {
    if (line.type === 'error')
      throw TernError.fromBody(
        { error: { code: line.code, message: line.message, details: line.details } },
        `${during} failed on the host`,
      );
    if (line.type === 'done') return line.result as ResultOf<R>;
    onReport(line as ReportOf<R>);
    return undefined;
  });
}
