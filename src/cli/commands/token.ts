/** `tern token …`: API tokens. */
import { TernError } from '../../errors.ts';
import { tokenRoutes } from '../../wire/api/tokens.ts';
import type { ApiToken } from '../../wire/identity.ts';
import { permissions } from '../../wire/permissions.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf } from '../flags.ts';
import { ago, printJson, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

const tokenUsage =
  'usage: tern token list [--all] | create NAME [--expires-in-days N] [--scope PERM]... [--user U] | revoke ID';

function tokenState(t: ApiToken): string {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && Date.parse(t.expiresAt) < Date.now()) return 'expired';
  return 'active';
}

export async function tokenCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  if ((sub === 'list' || sub === undefined) && args.length === 0) {
    const { items } = await api.call(tokenRoutes.list, { query: { all: flags.all || undefined } });
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['ID', 'NAME', 'USER', 'STATE', 'SCOPES', 'EXPIRES', 'LAST USED'],
      items.map((t) => [
        t.id,
        t.name,
        t.user,
        tokenState(t),
        t.scopes ? t.scopes.join(',') : 'all of its user’s',
        t.expiresAt?.slice(0, 10),
        ago(t.lastUsedAt),
      ]),
    );
  }
  if (sub === 'create' && args.length === 1) {
    const made = await api.call(tokenRoutes.create, {
      body: {
        name: args[0],
        ...(flags['expires-in-days'] ? { expiresInDays: Number(flags['expires-in-days']) } : {}),
        ...(flags.scope.length > 0
          ? { scopes: flags.scope.map((s) => oneOf(s, permissions, '--scope')) }
          : {}),
        ...(flags.user ? { user: flags.user } : {}),
      },
    });
    if (flags.output === 'json') return printJson(made);
    // The token alone on stdout (TOKEN=$(tern token create ci)); what it is, on stderr.
    process.stderr.write(
      `token ${args[0]} (id ${made.id}${flags.user ? `, for ${flags.user}` : ''}), expires ${made.expiresAt}.\n` +
        'It is shown only this once: keep it now. Use it as TERN_TOKEN, or as "Authorization: Bearer <token>".\n',
    );
    printText(`${made.token}\n`);
    return;
  }
  if (sub === 'revoke' && args.length === 1) {
    await api.call(tokenRoutes.revoke, { params: { id: args[0] } });
    if (flags.output !== 'json') printText(`token ${args[0]} revoked\n`);
    return;
  }
  throw new TernError('invalid_request', tokenUsage);
}

const token = viaGroup(tokenCommand);

export const tokenCommands: Command[] = [
  {
    path: 'token list',
    summary: 'API tokens',
    flags: [['all', "everyone's, not only yours"]],
    groupDefault: true,
    run: token,
  },
  {
    path: 'token create',
    args: 'NAME',
    summary: 'an API token; it is shown once',
    flags: ['expires-in-days', 'scope', ['user', 'the user it acts as']],
    run: token,
  },
  { path: 'token revoke', args: 'ID', summary: 'revoke a token', run: token },
];
