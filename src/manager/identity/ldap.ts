/**
 * Signs people in against an LDAP directory or Active Directory: the manager's service account
 * finds the user, the user's own bind proves the password, and the groups the directory puts the
 * user in become roles (through ldap-groups.ts). Everything the directory answers is untrusted:
 * counted, measured and checked before use. A wrong name, a wrong password and an ambiguous
 * match all give the same 'unauthorized' answer, so the login form reveals nothing.
 */
import {
  BusyError,
  Client,
  type Entry,
  Filter,
  FilterParser,
  ResultCodeError,
  UnavailableError,
} from 'ldapts';
import { TernError, unreachable } from '../../errors.ts';

export { type LdapGroupMapping, rolesFromGroups } from './ldap-groups.ts';

export interface LdapAuthConfig {
  /** ldap:// or ldaps:// */
  url: string;
  /** The service account that may search people and groups. */
  bindDn: string;
  bindPassword: string;
  userBase: string;
  /** `{user}` stands for the escaped user name: `(uid={user})`, AD `(sAMAccountName={user})`. */
  userFilter: string;
  /** Where groups are searched; without it only the user's `memberOf` counts (as in AD). */
  groupBase?: string;
  /** `{dn}` stands for the user's escaped DN. */
  groupFilter?: string;
  /** Bounds the connect and each operation (default 5 s). */
  timeoutMs?: number;
}

export interface LdapUser {
  dn: string;
  /** The name as the directory spells it (AD matches names case-insensitively). */
  username: string;
  displayName: string | null;
  /** DNs of the user's groups; ldap-groups.ts matches them by DN or by cn. */
  groups: string[];
}

const defaultGroupFilter = '(|(member={dn})(uniqueMember={dn}))';
const maxGroups = 1000;
const maxDnLength = 2048;
const maxNameLength = 256;
const maxPasswordLength = 1024;
const badLogin = 'invalid user name or password';

export async function ldapAuthenticate(
  cfg: LdapAuthConfig,
  username: string,
  password: string,
): Promise<LdapUser> {
  // An empty password makes a simple bind anonymous, which "succeeds": refuse before any bind.
  if (
    typeof username !== 'string' ||
    typeof password !== 'string' ||
    username.trim() === '' ||
    password === '' ||
    username.length > maxNameLength ||
    password.length > maxPasswordLength
  )
    throw new TernError('unauthorized', badLogin);
  const userFilter = filterFrom(cfg.userFilter, '{user}', username, 'user filter');
  const nameAttr = /\(([A-Za-z][A-Za-z0-9-]*)=\{user\}\)/.exec(cfg.userFilter)?.[1];
  const timeout = cfg.timeoutMs ?? 5000;
  const client = new Client({ url: cfg.url, timeout, connectTimeout: timeout });
  try {
    try {
      await client.bind(cfg.bindDn, cfg.bindPassword);
    } catch (err) {
      if (err instanceof ResultCodeError)
        throw new TernError(
          'unavailable',
          `the directory ${cfg.url} refused the service account ${cfg.bindDn}: ${err.message}`,
        );
      throw silent(cfg.url, err);
    }

    const found = await directory(cfg.url, () =>
      client.search(cfg.userBase, {
        scope: 'sub',
        filter: userFilter,
        // Two are enough to know the name is ambiguous.
        sizeLimit: 2,
        attributes: ['displayName', 'cn', 'memberOf', ...(nameAttr ? [nameAttr] : [])],
      }),
    );
    if (found.searchEntries.length !== 1) throw new TernError('unauthorized', badLogin);
    const entry = found.searchEntries[0];
    const dn = checkedDn(cfg.url, entry.dn, 'a user');

    const groups = new Map<string, string>();
    const addGroup = (g: string) => {
      const key = g.toLowerCase();
      if (!groups.has(key)) groups.set(key, g);
      if (groups.size > maxGroups)
        throw new TernError(
          'protocol_error',
          `the directory ${cfg.url} puts ${dn} in more than ${maxGroups} groups`,
        );
    };
    for (const g of values(entry, 'memberOf')) addGroup(checkedDn(cfg.url, g, `a memberOf of ${dn}`));
    if (cfg.groupBase) {
      const filter = filterFrom(cfg.groupFilter ?? defaultGroupFilter, '{dn}', dn, 'group filter');
      const res = await directory(cfg.url, () =>
        client.search(cfg.groupBase!, {
          scope: 'sub',
          filter,
          sizeLimit: maxGroups + 1,
          attributes: ['1.1'],
        }),
      );
      for (const g of res.searchEntries) addGroup(checkedDn(cfg.url, g.dn, `a group of ${dn}`));
    }

    // Last, so a wrong password costs the directory no more than a right one would.
    try {
      await client.bind(dn, password);
    } catch (err) {
      // Busy and unavailable say nothing about the password; every other refusal does.
      if (err instanceof BusyError || err instanceof UnavailableError || !(err instanceof ResultCodeError))
        throw silent(cfg.url, err);
      throw new TernError('unauthorized', badLogin);
    }

    const names = nameAttr ? values(entry, nameAttr) : [];
    const spelled = names.find((n) => n.toLowerCase() === username.trim().toLowerCase());
    return {
      dn,
      username: spelled ?? username,
      displayName: displayName(cfg.url, dn, entry),
      groups: [...groups.values()],
    };
  } finally {
    await client.unbind().catch(() => {});
  }
}

/** The configured filter with `placeholder` replaced by the RFC 4515-escaped value. */
function filterFrom(template: string, placeholder: string, value: string, what: string): string {
  if (!template.includes(placeholder))
    throw new TernError('invalid_request', `the LDAP ${what} ${template} has no ${placeholder}`);
  const filter = template.replaceAll(placeholder, Filter.escape(value));
  try {
    FilterParser.parseString(filter);
  } catch (err) {
    throw new TernError(
      'invalid_request',
      `the LDAP ${what} ${template} is not a valid filter: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  return filter;
}

function silent(url: string, err: unknown): TernError {
  return unreachable(err, (why) => `the directory ${url} did not answer: ${why}`);
}

/** Runs a search as the service account: a refusal or a lost connection is the directory's fault. */
async function directory<T>(url: string, op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (!(err instanceof ResultCodeError)) throw silent(url, err);
    throw new TernError('unavailable', `the directory ${url} refused a search: ${err.message}`);
  }
}

function values(entry: Entry, attr: string): string[] {
  const key = Object.keys(entry).find((k) => k.toLowerCase() === attr.toLowerCase());
  if (!key) return [];
  const v = entry[key];
  const list = Array.isArray(v) ? v : [v];
  return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : x));
}

function checkedDn(url: string, dn: unknown, what: string): string {
  if (typeof dn !== 'string' || dn.length === 0 || dn.length > maxDnLength || /\p{Cc}/u.test(dn))
    throw new TernError(
      'protocol_error',
      `the directory ${url} answered with ${what} whose DN is not usable (${typeof dn === 'string' ? `${dn.length} characters` : typeof dn})`,
    );
  return dn;
}

function displayName(url: string, dn: string, entry: Entry): string | null {
  const name = values(entry, 'displayName')[0] ?? values(entry, 'cn')[0];
  if (name === undefined) return null;
  if (name.length > maxNameLength || /\p{Cc}/u.test(name))
    throw new TernError(
      'protocol_error',
      `the directory ${url} gave ${dn} a display name that is not usable`,
    );
  return name;
}
