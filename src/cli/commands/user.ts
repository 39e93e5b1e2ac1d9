/** `tern user …` and `tern user group …`: local users, and the groups that give their members a role. */
import { TernError } from '../../errors.ts';
import { askSecret, readStdin } from '../../prompt.ts';
import { groupRoutes } from '../../wire/api/groups.ts';
import { sessionRoutes } from '../../wire/api/session.ts';
import { userRoutes } from '../../wire/api/users.ts';
import type { Group, User } from '../../wire/identity.ts';
import { roles } from '../../wire/permissions.ts';
import type { BodyOf } from '../../wire/route.ts';
import { eachName } from '../bulk.ts';
import type { ApiClient } from '../client.ts';
import { type Flags, oneOf } from '../flags.ts';
import { byName } from '../names.ts';
import { ago, printFields, printJson, printTable, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

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
    const items = byName((await api.call(userRoutes.list)).items);
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
    return showUser(await api.call(userRoutes.show, { params: { user: name } }), flags);
  if (sub === 'create' && args.length === 1) {
    const password = await newPassword(flags, 'password');
    const u = await api.call(userRoutes.create, {
      body: {
        name,
        ...(flags['display-name'] !== undefined ? { displayName: flags['display-name'] } : {}),
        ...(password ? { password } : {}),
        ...(flags.role ? { role: oneOf(flags.role, roles, '--role') } : {}),
        ...(flags.group.length > 0 ? { groups: flags.group } : {}),
      },
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
    const change: BodyOf<typeof userRoutes.update> = {};
    if (flags.role) change.role = oneOf(flags.role, roles, '--role');
    if (flags['no-role']) change.role = null;
    if (flags.enable) change.disabled = false;
    if (flags.disable) change.disabled = true;
    if (flags['display-name'] !== undefined) change.displayName = flags['display-name'];
    if (Object.keys(change).length === 0) throw new TernError('invalid_request', userUsage);
    return showUser(await api.call(userRoutes.update, { params: { user: name }, body: change }), flags);
  }
  if (sub === 'passwd' && args.length <= 1) {
    if (name) {
      const password = await newPassword(flags);
      if (!password) throw new TernError('invalid_request', 'the new password is empty');
      await api.call(userRoutes.update, { params: { user: name }, body: { password } });
      if (flags.output !== 'json') printText(`password of ${name} changed\n`);
      return;
    }
    const current = await askSecret('current password', { env: 'TERN_PASSWORD' });
    const password = await newPassword(flags);
    if (!password) throw new TernError('invalid_request', 'the new password is empty');
    await api.call(sessionRoutes.changePassword, { body: { current, password } });
    if (flags.output !== 'json') printText('your password is changed\n');
    return;
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, userUsage, async (user) => {
      await api.call(userRoutes.remove, { params: { user } });
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
    const items = byName((await api.call(groupRoutes.list)).items);
    if (flags.output === 'json') return printJson(items);
    return printTable(
      ['NAME', 'ROLE', 'MEMBERS', 'DIRECTORY GROUP'],
      items.map((g) => [g.name, g.role, g.members.join(','), g.ldapGroup]),
    );
  }
  if (sub === 'create' && args.length === 1 && flags.role) {
    return show(
      await api.call(groupRoutes.create, {
        body: {
          name,
          role: oneOf(flags.role, roles, '--role'),
          ...(flags['ldap-group'] ? { ldapGroup: flags['ldap-group'] } : {}),
        },
      }),
    );
  }
  if (sub === 'delete' && args.length > 0) {
    return eachName(args, 'usage: tern user group delete NAME...', async (group) => {
      await api.call(groupRoutes.remove, { params: { group } });
      if (flags.output !== 'json') printText(`group ${group} deleted\n`);
    });
  }
  if ((sub === 'add' || sub === 'remove') && args.length === 2) {
    return show(
      await api.call(sub === 'add' ? groupRoutes.addMember : groupRoutes.removeMember, {
        params: { group: name, user },
      }),
    );
  }
  throw new TernError(
    'invalid_request',
    'usage: tern user group list | create NAME --role R [--ldap-group DN_OR_CN] | delete NAME... | add NAME USER | remove NAME USER',
  );
}

const user = viaGroup(userCommand);

export const userCommands: Command[] = [
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
];
