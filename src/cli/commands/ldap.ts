/** `tern ldap …`: logging in through a directory. */
import { TernError } from '../../errors.ts';
import { askSecret } from '../../prompt.ts';
import { ldapRoutes } from '../../wire/api/ldap.ts';
import type { DirectorySettings } from '../../wire/identity.ts';
import type { ApiClient } from '../client.ts';
import type { Flags } from '../flags.ts';
import { printFields, printJson, printText } from '../output.ts';
import { type Command, viaGroup } from '../registry.ts';

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
    return show((await api.call(ldapRoutes.show)).settings);
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
    const r = await api.call(ldapRoutes.set, { body: { settings, bindPassword } });
    return show(r.settings);
  }
  if (sub === 'clear' && args.length === 0) {
    await api.call(ldapRoutes.remove);
    if (flags.output !== 'json') printText('directory cleared: people log in with local passwords only\n');
    return;
  }
  throw new TernError('invalid_request', ldapUsage);
}

const ldap = viaGroup(ldapCommand);

export const ldapCommands: Command[] = [
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
