/** `tern audit list`: the audit log, newest first: every change and every refusal. */
import { TernError } from '../../errors.ts';
import { auditRoutes } from '../../wire/api/audit.ts';
import type { QueryOf } from '../../wire/route.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf, wordsOf } from '../flags.ts';
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
  const query: Partial<QueryOf<typeof auditRoutes.list>> = {
    actor: flags.actor,
    action: flags.action,
    object: flags.object,
    result: flags.result
      ? oneOf(flags.result, wordsOf(auditRoutes.list.query.properties.result), '--result')
      : undefined,
    limit: flags.limit ? Number(flags.limit) : undefined,
    cursor: flags.cursor,
  };
  if (flags.since) {
    const t = Date.parse(flags.since);
    if (Number.isNaN(t))
      throw new TernError(
        'invalid_request',
        `--since "${flags.since}" is not a time (e.g. 2025-01-31T08:00:00Z)`,
      );
    query.since = new Date(t).toISOString();
  }
  const page = await api.call(auditRoutes.list, { query });
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
