/**
 * Password login: a local user's scrypt hash, or the directory when the user is not local.
 * A directory user is recorded at its first login and its mapped groups are set from the
 * directory each time. Every failure gives the same answer; repeated failures lock the name
 * from the address that guesses (lockout.ts), so guessing costs time as well as scrypt work.
 */
import { TernError } from '../../errors.ts';
import type { Directory } from './directory.ts';
import type { GroupStore } from './groups.ts';
import { ldapAuthenticate, rolesFromGroups } from './ldap.ts';
import { Lockout } from './lockout.ts';
import { spendPasswordTime, verifyPassword } from './passwords.ts';
import type { UserRow, UserStore } from './users.ts';

const wrong = () => new TernError('unauthorized', 'invalid user name or password');

export class Login {
  readonly #users: UserStore;
  readonly #groups: GroupStore;
  readonly #directory: Directory;
  readonly #lockout: Lockout;

  constructor(users: UserStore, groups: GroupStore, directory: Directory, lockout = new Lockout()) {
    this.#users = users;
    this.#groups = groups;
    this.#directory = directory;
    this.#lockout = lockout;
  }

  /** The user these credentials prove, and how (`password` or `ldap`), tried from `address`. */
  async login(
    name: string,
    password: string,
    address: string,
  ): Promise<{ user: UserRow; via: 'password' | 'ldap' }> {
    const key = name.toLowerCase();
    const wait = this.#lockout.wait(key, address);
    if (wait > 0)
      throw new TernError(
        'unauthorized',
        `too many failed logins for ${name}; try again in ${Math.ceil(wait / 1000)} s`,
      );
    this.#lockout.begin(key, address);
    let outcome: 'ok' | 'wrong' | 'error' = 'error';
    try {
      const done = await this.#check(name, password);
      outcome = 'ok';
      await this.#users.recordLogin(done.user.id);
      return done;
    } catch (err) {
      if (err instanceof TernError && err.code === 'unauthorized') outcome = 'wrong';
      throw err;
    } finally {
      this.#lockout.end(key, address, outcome);
    }
  }

  async #check(name: string, password: string): Promise<{ user: UserRow; via: 'password' | 'ldap' }> {
    // By name only, never by id: an id would be a second name with a lockout of its own.
    const local = await this.#users.byName(name);
    if (local && local.source === 'local') {
      const ok = local.passwordHash !== null && (await verifyPassword(password, local.passwordHash));
      if (local.passwordHash === null) await spendPasswordTime(password);
      // A disabled account answers as a wrong password does: the answer confirms nothing.
      if (!ok || local.disabled) throw wrong();
      return { user: local, via: 'password' };
    }
    const cfg = await this.#directory.config();
    if (!cfg) {
      await spendPasswordTime(password);
      throw wrong();
    }
    const found = await ldapAuthenticate(cfg, name, password);
    const mapped = await this.#groups.mapped();
    const groups = rolesFromGroups(
      found.groups,
      mapped.map((m) => ({ ldapGroup: m.ldapGroup, role: m.name })),
    );
    const known = await this.#users.byName(found.username);
    // The directory matches names without case; its spelling may be a local user's name,
    // and a directory account must never become a local user (such as admin).
    if (known && known.source !== 'ldap') throw wrong();
    const user =
      known ??
      (await this.#users.create({ name: found.username, displayName: found.displayName, source: 'ldap' }));
    if (user.disabled) throw wrong();
    await this.#groups.setMappedMembership(user.id, groups);
    return { user, via: 'ldap' };
  }
}
