/**
 * `tern login|logout|whoami`, `tern user …` (and `tern user group …`), `tern token …`,
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
import { askSecret, readStdin } from '../../prompt.ts';
import type { ApiToken, DirectorySettings, Group, User, Whoami } from '../../wire/identity.ts';
import { eachName } from '../bulk.ts';
import { type ApiClient, caFromEnvironment, unreachableManager } from '../client.ts';
import type { Flags } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, printFields, printJson, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

const enc = encodeURIComponent;

/** A password piped in (`--password-stdin`): the first line, without its line ending. */
async function passwordFromStdin(): Promise<string> {
  const text = (await readStdin()).toString('utf8').replace(/\r?\n$/, '');
  if (text === '') throw new TernError('invalid_request', 'no password on stdin');
  return text;
}

/** A new password: piped in with --password-stdin, or typed twice. */
async function newPassword(flags: Flags, what = 'new password'): Promise<string> {
  if (flags['password-stdin']) return passwordFromStdin();
  return askSecret(what, { confirm: true, otherwise: 'pipe it in with --password-stdin' });
}

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
    res = await managerFetch(`${url}/api/v1/session`, {
      method: 'POST',
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
  const withSession = (method: string, path: string, b?: unknown) =>
    requestJson<{ token: string; id: string; expiresAt: string }>(`${url}${path}`, {
      method,
      headers: { cookie },
      body: b,
      timeoutMs: 30_000,
      unreachable,
      peer: 'the manager',
      fetch: managerFetch,
    });
  const name = `cli@${os.hostname()}`;
  const made = await withSession('POST', '/api/v1/tokens', { name, expiresInDays: 30 });
  await withSession('DELETE', '/api/v1/session').catch(() => undefined);
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
  const me = await api.request<Whoami>('GET', '/api/v1/session');
  if (me.tokenId === null) throw new TernError('invalid_request', 'this is a session, not a token');
  await api.request('DELETE', `/api/v1/tokens/${enc(me.tokenId)}`);
  const fromConfig = !(process.env.TERN_URL && process.env.TERN_TOKEN);
  if (fromConfig) fs.rmSync(cliConfigPath(), { force: true });
  if (flags.output === 'json') return printJson({ revoked: me.tokenId });
  printText(
    `logged out: token ${me.tokenId} of ${me.user} is revoked${fromConfig ? `, ${cliConfigPath()} removed` : ''}\n` +
      `log in again with: tern login --url ${api.url} --user ${me.user}\n`,
  );
}

export async function whoamiCommand(api: ApiClient, flags: Flags): Promise<void> {
  const me = await api.request<Whoami>('GET', '/api/v1/session');
  if (flags.output === 'json') return printJson(me);
  showWhoami(me, api.url);
}

const userUsage = `usage: tern user list | show NAME | delete NAME...
       tern user create NAME [--role R] [--group G]... [--display-name S] [--password-stdin]
       tern user set NAME [--role R | --no-role] [--disable | --enable] [--display-name S]
       tern user passwd [NAME] [--password-stdin]     (without NAME: one's own, asks the current one)
       tern user group list | create NAME --role R [--ldap-group DN_OR_CN] | delete NAME... | add|remove NAME USER`;

function showUser(u: User, flags: Flags): void {
  if (flags.output === 'json') {
    printJson(u);
    return;
  }
  printFields([
    ['name', u.name],
    ['display name', u.displayName],
    ['source', u.source],
    ['role', u.role],
    ['groups', u.groups.join(', ')],
    ['roles', u.roles.join(', ')],
    ['state', u.disabled ? 'disabled' : 'enabled'],
    ['created', u.createdAt],
    ['last login', u.lastLoginAt ? `${u.lastLoginAt} (${ago(u.lastLoginAt)})` : null],
  ]);
}

export async function userCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const name = args[0];
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.request<{ items: User[] }>('GET', '/api/v1/users')).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'SOURCE', 'ROLE', 'GROUPS', 'ROLES', 'STATE', 'LAST LOGIN', 'DISPLAY NAME'],
      items.map((u) => [
        u.name,
        u.source,
        u.role,
        u.groups.join(','),
        u.roles.join(','),
        u.disabled ? 'disabled' : 'enabled',
        ago(u.lastLoginAt),
        u.displayName,
      ]),
    );
  }
  if (sub === 'group') return groupCommand(api, args[0], args.slice(1), flags);
  if (sub === 'show' && args.length === 1)
    return showUser(await api.request<User>('GET', `/api/v1/users/${enc(name)}`), flags);
  if (sub === 'create' && args.length === 1) {
    const password = await newPassword(flags, 'password');
    const u = await api.request<User>('POST', '/api/v1/users', {
      name,
      ...(flags['display-name'] !== undefined ? { displayName: flags['display-name'] } : {}),
      ...(password ? { password } : {}),
      ...(flags.role ? { role: flags.role } : {}),
      ...(flags.group.length > 0 ? { groups: flags.group } : {}),
    });
    if (flags.output === 'json') return printJson(u);
    printText(
      `user ${u.name} created (${u.roles.length > 0 ? `roles: ${u.roles.join(', ')}` : 'no role yet'})${
        password ? '' : `; it has no password: make it a token with tern token create NAME --user ${u.name}`
      }\n`,
    );
    return;
  }
  if (sub === 'set' && args.length === 1) {
    if (flags.role && flags['no-role'])
      throw new TernError('invalid_request', '--role or --no-role, not both');
    if (flags.enable && flags.disable)
      throw new TernError('invalid_request', '--enable or --disable, not both');
    const change: Record<string, unknown> = {};
    if (flags.role) change.role = flags.role;
    if (flags['no-role']) change.role = null;
    if (flags.enable) change.disabled = false;
    if (flags.disable) change.disabled = true;
    if (flags['display-name'] !== undefined) change.displayName = flags['display-name'];
    if (Object.keys(change).length === 0) throw new TernError('invalid_request', userUsage);
    return showUser(await api.request<User>('PATCH', `/api/v1/users/${enc(name)}`, change), flags);
  }
  if (sub === 'passwd' && args.length <= 1) {
    if (name) {
      const password = await newPassword(flags);
      if (!password) throw new TernError('invalid_request', 'the new password is empty');
      await api.request('PATCH', `/api/v1/users/${enc(name)}`, { password });
      if (flags.output !== 'json') printText(`password of ${name} changed\n`);
      return;
    }
    const current = await askSecret('current password', { env: 'TERN_PASSWORD' });
    const password = await newPassword(flags);
    if (!password) throw new TernError('invalid_request', 'the new password is empty');
    await api.request('PUT', '/api/v1/session/password', { current, password });
    if (flags.output !== 'json') printText('your password is changed\n');
    return;
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, userUsage, async (user) => {
      await api.request('DELETE', `/api/v1/users/${enc(user)}`);
      if (flags.output !== 'json') printText(`user ${user} deleted; its tokens are revoked\n`);
    });
  }
  throw new TernError('invalid_request', userUsage);
}

/** `tern user group …`: groups of users that give their members a role (`tern group` is placement). */
async function groupCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const [name, user] = args;
  const show = (g: Group) => {
    if (flags.output === 'json') return printJson(g);
    printFields([
      ['name', g.name],
      ['role', g.role],
      ['directory group', g.ldapGroup],
      ['members', g.members.join(', ')],
      ['created', g.createdAt],
    ]);
  };
  if (sub === 'list' || sub === undefined) {
    const items = byName((await api.request<{ items: Group[] }>('GET', '/api/v1/groups')).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'ROLE', 'MEMBERS', 'DIRECTORY GROUP'],
      items.map((g) => [g.name, g.role, g.members.join(','), g.ldapGroup]),
    );
  }
  if (sub === 'create' && args.length === 1 && flags.role) {
    return show(
      await api.request<Group>('POST', '/api/v1/groups', {
        name,
        role: flags.role,
        ...(flags['ldap-group'] ? { ldapGroup: flags['ldap-group'] } : {}),
      }),
    );
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, 'usage: tern user group delete NAME...', async (group) => {
      await api.request('DELETE', `/api/v1/groups/${enc(group)}`);
      if (flags.output !== 'json') printText(`group ${group} deleted\n`);
    });
  }
  if ((sub === 'add' || sub === 'remove') && args.length === 2) {
    return show(
      await api.request<Group>(
        sub === 'add' ? 'PUT' : 'DELETE',
        `/api/v1/groups/${enc(name)}/members/${enc(user)}`,
      ),
    );
  }
  throw new TernError(
    'invalid_request',
    'usage: tern user group list | create NAME --role R [--ldap-group DN_OR_CN] | delete NAME... | add NAME USER | remove NAME USER',
  );
}

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
    const { items } = await api.request<{ items: ApiToken[] }>(
      'GET',
      `/api/v1/tokens${flags.all ? '?all=true' : ''}`,
    );
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
    const made = await api.request<{ token: string; id: string; expiresAt: string }>(
      'POST',
      '/api/v1/tokens',
      {
        name: args[0],
        ...(flags['expires-in-days'] ? { expiresInDays: Number(flags['expires-in-days']) } : {}),
        ...(flags.scope.length > 0 ? { scopes: flags.scope } : {}),
        ...(flags.user ? { user: flags.user } : {}),
      },
    );
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
    await api.request('DELETE', `/api/v1/tokens/${enc(args[0])}`);
    if (flags.output !== 'json') printText(`token ${args[0]} revoked\n`);
    return;
  }
  throw new TernError('invalid_request', tokenUsage);
}

const ldapUsage = `usage: tern ldap show | clear
       tern ldap set --url ldaps://HOST --bind-dn DN --user-base DN --user-filter '(uid={user})'
                     [--group-base DN] [--group-filter '(member={dn})']
       (the bind password is typed, or taken from TERN_LDAP_BIND_PASSWORD)`;

export async function ldapCommand(
  api: ApiClient,
  sub: string | undefined,
  args: string[],
  flags: Flags,
): Promise<void> {
  const show = (settings: DirectorySettings | null) => {
    if (flags.output === 'json') return printJson({ settings });
    if (!settings) {
      printText('no directory: people log in with local passwords only\n');
      return;
    }
    printFields([
      ['url', settings.url],
      ['bind dn', settings.bindDn],
      ['bind password', '(kept encrypted; never shown)'],
      ['user base', settings.userBase],
      ['user filter', settings.userFilter],
      ['group base', settings.groupBase],
      ['group filter', settings.groupFilter],
    ]);
  };
  if ((sub === 'show' || sub === undefined) && args.length === 0) {
    return show(
      (await api.request<{ settings: DirectorySettings | null }>('GET', '/api/v1/identity/ldap')).settings,
    );
  }
  if (sub === 'set' && args.length === 0) {
    if (!flags.url || !flags['bind-dn'] || !flags['user-base'] || !flags['user-filter'])
      throw new TernError('invalid_request', ldapUsage);
    const settings: DirectorySettings = {
      url: flags.url,
      bindDn: flags['bind-dn'],
      userBase: flags['user-base'],
      userFilter: flags['user-filter'],
      ...(flags['group-base'] ? { groupBase: flags['group-base'] } : {}),
      ...(flags['group-filter'] ? { groupFilter: flags['group-filter'] } : {}),
    };
    const bindPassword = await askSecret('bind password', { env: 'TERN_LDAP_BIND_PASSWORD' });
    if (!bindPassword) throw new TernError('invalid_request', 'the bind password is empty');
    const r = await api.request<{ settings: DirectorySettings }>('PUT', '/api/v1/identity/ldap', {
      settings,
      bindPassword,
    });
    return show(r.settings);
  }
  if (sub === 'clear' && args.length === 0) {
    await api.request('DELETE', '/api/v1/identity/ldap');
    if (flags.output !== 'json') printText('directory cleared: people log in with local passwords only\n');
    return;
  }
  throw new TernError('invalid_request', ldapUsage);
}

const user = viaGroup(userCommand);
const token = viaGroup(tokenCommand);
const ldap = viaGroup(ldapCommand);

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
  { path: 'user list', summary: 'the users', groupDefault: true, run: user },
  { path: 'user show', args: 'NAME', summary: 'one user', run: user },
  {
    path: 'user create',
    args: 'NAME',
    summary: 'a local user (the password typed, or --password-stdin)',
    flags: ['role', ['group', 'a group it joins (repeatable)'], 'display-name', 'password-stdin'],
    run: user,
  },
  {
    path: 'user set',
    args: 'NAME',
    summary: "change a user's role, state or name",
    flags: [
      'role',
      'no-role',
      ['disable', 'the user can no longer log in'],
      ['enable', 'the user can log in again'],
      'display-name',
    ],
    run: user,
  },
  {
    path: 'user passwd',
    args: '[NAME]',
    summary: 'set a password; without NAME your own (asks the current one)',
    flags: ['password-stdin'],
    run: user,
  },
  { path: 'user delete', args: 'NAME...', summary: 'delete users; their tokens are revoked', run: user },
  { path: 'user group list', summary: 'user groups', groupDefault: true, run: user },
  {
    path: 'user group create',
    args: 'NAME',
    summary: 'a user group with a role',
    flags: [['role', 'the role its members get'], 'ldap-group'],
    run: user,
  },
  { path: 'user group delete', args: 'NAME...', summary: 'delete user groups', run: user },
  { path: 'user group add', args: 'NAME USER', summary: 'add a user to a group', run: user },
  { path: 'user group remove', args: 'NAME USER', summary: 'take a user out of a group', run: user },
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
  { path: 'ldap show', summary: 'the directory people log in with', groupDefault: true, run: ldap },
  {
    path: 'ldap set',
    summary: 'log in through a directory (bind password typed, or TERN_LDAP_BIND_PASSWORD)',
    flags: [
      ['url', "the directory's URL"],
      'bind-dn',
      'user-base',
      'user-filter',
      'group-base',
      'group-filter',
    ],
    run: ldap,
  },
  { path: 'ldap clear', summary: 'no directory: local passwords only', run: ldap },
];
