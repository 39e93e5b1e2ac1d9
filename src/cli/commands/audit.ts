/** `tern audit list`: the audit log, newest first: every change and every refusal. */
import { TernError } from '../../errors.ts';
import type { AuditRecord } from '../../wire/identity.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printJson, printTable } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

const usage =
  'usage: tern audit list [--actor A] [--action "POST /vms"] [--object PREFIX] [--result ok|denied|failed] [--since ISO] [--limit N] [--cursor C]';

export async function auditCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if ((sub !== 'list' && sub !== undefined) || args.length > 0) throw new TernError('invalid_request', usage);
  const q = new URLSearchParams();
  if (flags.actor) q.set('actor', flags.actor);
  if (flags.action) q.set('action', flags.action);
  if (flags.object) q.set('object', flags.object);
  if (flags.result) {
    if (!['ok', 'denied', 'failed'].includes(flags.result))
      throw new TernError('invalid_request', '--result is ok, denied or failed');
    q.set('result', flags.result);
  }
  if (flags.since) {
    const t = Date.parse(flags.since);
    if (Number.isNaN(t))
      throw new TernError(
        'invalid_request',
        `--since "${flags.since}" is not a time (e.g. 2025-01-31T08:00:00Z)`,
      );
    q.set('since', new Date(t).toISOString());
  }
  if (flags.limit) q.set('limit', flags.limit);
  if (flags.cursor) q.set('cursor', flags.cursor);
  const page = await api.request<{ items: AuditRecord[]; nextCursor: string | null }>(
    'GET',
    `/api/v1/audit?${q}`,
  );
  if (flags.output === 'json') return printJson(page);
  printTable(
    ['TIME', 'ACTOR', 'VIA', 'ACTION', 'OBJECT', 'RESULT', 'STATUS', 'FROM', 'DETAIL'],
    page.items.map((r) => [
      r.at,
      r.actor,
      r.via,
      r.action,
      r.object,
      r.result,
      r.status,
      r.sourceIp,
      r.detail,
    ]),
  );
  if (page.nextCursor) process.stderr.write(`(older entries: --cursor ${page.nextCursor})\n`);
}

export const auditCommands: Command[] = [
  {
    path: 'audit list',
    summary: 'the audit log, newest first: every change and every refusal',
    flags: ['actor', 'action', ['object', 'only objects starting so'], 'result', 'since', 'limit', 'cursor'],
    groupDefault: true,
    run: viaGroup(auditCommand),
  },
];
