/**
 * `tern login|logout|whoami`; `tern user …` (and `tern user group …`), `tern token …`,
 * `tern ldap …`: who may use Tern and how they prove it. Passwords and other secrets are never
 * taken from the command line: they are typed without echo, or come from stdin or the
 * environment for scripts.
 */
import fs from 'node:fs';
import os from 'node:os';
import { cliConfigPath, writeCliConfig } from '../../allinone/config.ts';
import { rootCause, TernError } from '../../errors.ts';
import { requestJson } from '../../http/json-client.ts';
import { tlsFetch } from '../../pki/identity.ts';
import { askSecret } from '../../prompt.ts';
import { sessionRoutes } from '../../wire/api/session.ts';
import { tokenRoutes } from '../../wire/api/tokens.ts';
import { callRoute, type Send } from '../../wire/api-client.ts';
import type { Whoami } from '../../wire/identity.ts';
import { type ApiClient, caFromEnvironment, unreachableManager } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printFields, printJson, printText } from '../output.ts';
import type { Command } from '../registry.ts';
import { ldapCommands } from './ldap.ts';
import { tokenCommands } from './token.ts';
import { userCommands } from './user.ts';

/**
 * The manager to log in to, and the CA to trust for it: --url and --ca, then TERN_URL and
 * TERN_CA, then the config's, then the all-in-one default. A CA recorded for the same URL is
 * kept.
 */
function loginTarget(flags: Flags): { url: string; ca: string | null } {
  let config: { url?: unknown; ca?: unknown } = {};
  try {
    config = JSON.parse(fs.readFileSync(cliConfigPath(), 'utf8'));
  } catch {
    // No config yet.
  }
  const url = (
    flags.url ??
    process.env.TERN_URL ??
    (typeof config.url === 'string' ? config.url : 'https://127.0.0.1:7410')
  ).replace(/\/$/, '');
  let ca: string | null = null;
  if (flags.ca) {
    try {
      ca = fs.readFileSync(flags.ca, 'utf8');
    } catch (err) {
      throw new TernError('invalid_request', `--ca: cannot read ${flags.ca} (${(err as Error).message})`);
    }
  } else {
    ca = caFromEnvironment() ?? (typeof config.ca === 'string' && config.url === url ? config.ca : null);
  }
  return { url, ca };
}

function showWhoami(w: Whoami, url: string): void {
  printFields([
    ['user', w.user],
    ['roles', w.roles.length > 0 ? w.roles.join(', ') : 'none (an administrator must give one)'],
    ['via', w.via],
    ['expires', w.expiresAt],
    ['manager', url],
    ['permissions', w.permissions.join(', ')],
  ]);
}

/**
 * `tern login`: a password login (a session), traded at once for an API token the CLI keeps in
 * its config; the session ends right after.
 */
export async function loginCommand(flags: Flags): Promise<void> {
  const { url, ca } = loginTarget(flags);
  const user = flags.user;
  if (!user) throw new TernError('invalid_request', 'usage: tern login [--url URL] [--ca FILE] --user NAME');
  const password = await askSecret('password', { env: 'TERN_PASSWORD' });
  const unreachable = (why: string, cause: Error) => unreachableManager(url, why, cause);
  const managerFetch = tlsFetch(null, { ca: ca ?? undefined, checkName: true });
  let res: Response;
  try {
    res = await managerFetch(`${url}${sessionRoutes.login.path}`, {
      method: sessionRoutes.login.method,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, password }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    const cause = rootCause(err);
    throw new TernError('unavailable', unreachable(cause.message, cause), undefined, { cause: err });
  }
  const body = (await res.json().catch(() => null)) as unknown;
  if (!res.ok) throw TernError.fromBody(body, `the manager answered ${res.status}`);
  const me = body as Whoami;
  const cookie = res.headers.getSetCookie()[0]?.split(';')[0];
  if (!cookie) throw new TernError('protocol_error', 'the manager started no session');
  const withSession: Send = (method, path, b) =>
    requestJson(`${url}${path}`, {
      method,
      headers: { cookie },
      body: b,
      timeoutMs: 30_000,
      unreachable,
      peer: 'the manager',
      fetch: managerFetch,
    });
  const name = `cli@${os.hostname()}`;
  const made = await callRoute(withSession, tokenRoutes.create, {
    body: { name, expiresInDays: 30 },
  });
  await callRoute(withSession, sessionRoutes.logout).catch(() => undefined);
  const file = cliConfigPath();
  writeCliConfig({ url, token: made.token, ...(ca ? { ca } : {}) }, file);
  if (flags.output === 'json')
    return printJson({ ...me, tokenId: made.id, tokenExpiresAt: made.expiresAt, config: file });
  printText(
    `logged in to ${url} as ${me.user} (${me.roles.length > 0 ? `roles: ${me.roles.join(', ')}` : 'no roles yet'})\n` +
      `token ${name} (expires ${made.expiresAt}) saved in ${file}\n`,
  );
  if (process.env.TERN_URL && process.env.TERN_TOKEN)
    process.stderr.write('note: TERN_URL and TERN_TOKEN are set, and win over the config\n');
}

/** `tern logout`: revokes the CLI's token; removes the config when the token came from it. */
export async function logoutCommand(api: ApiClient, flags: Flags): Promise<void> {
  const me = await api.call(sessionRoutes.show);
  if (me.tokenId === null) throw new TernError('invalid_request', 'this is a session, not a token');
  await api.call(tokenRoutes.revoke, { params: { id: me.tokenId } });
  const fromConfig = !(process.env.TERN_URL && process.env.TERN_TOKEN);
  if (fromConfig) fs.rmSync(cliConfigPath(), { force: true });
  if (flags.output === 'json') return printJson({ revoked: me.tokenId });
  printText(
    `logged out: token ${me.tokenId} of ${me.user} is revoked${fromConfig ? `, ${cliConfigPath()} removed` : ''}\n` +
      `log in again with: tern login --url ${api.url} --user ${me.user}\n`,
  );
}

export async function whoamiCommand(api: ApiClient, flags: Flags): Promise<void> {
  const me = await api.call(sessionRoutes.show);
  if (flags.output === 'json') return printJson(me);
  showWhoami(me, api.url);
}

export const identityCommands: Command[] = [
  {
    path: 'login',
    summary: 'log in: keeps a 30-day token (and the CA of the manager) in the config',
    details: 'the password is typed, or TERN_PASSWORD',
    flags: ['url', 'ca', ['user', 'who logs in']],
    run: ({ flags }) => loginCommand(flags),
  },
  {
    path: 'logout',
    summary: 'revoke the token of the config',
    run: ({ api, flags }) => logoutCommand(api(), flags),
  },
  {
    path: 'whoami',
    summary: 'who the CLI acts as, and with what rights',
    run: ({ api, flags }) => whoamiCommand(api(), flags),
  },
  ...userCommands,
  ...tokenCommands,
  ...ldapCommands,
];
