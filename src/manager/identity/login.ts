/**
 * Password login: a local user's scrypt hash, or the directory when the user is not local.
 * A directory user is recorded at its first login and its mapped groups are set from the
 * directory each time. Every failure gives the same answer; repeated failures for one name
 * slow that name down, so guessing costs time as well as scrypt work.
 */
import { TernError } from '../../errors.ts';
import type { Directory } from './directory.ts';
import type { GroupStore } from './groups.ts';
import { ldapAuthenticate, rolesFromGroups } from './ldap.ts';
import { spendPasswordTime, verifyPassword } from './passwords.ts';
import type { UserRow, UserStore } from './users.ts';

const wrong = () => new TernError('unauthorized', 'invalid user name or password');
const maxFailures = 5;
const failureWindowMs = 10 * 60_000;
const lockMs = 60_000;

export class Login {
  readonly #users: UserStore;
  readonly #groups: GroupStore;
  readonly #directory: Directory;
  readonly #failures = new Map<string, { count: number; first: number; lockedUntil: number }>();

  constructor(users: UserStore, groups: GroupStore, directory: Directory) {
    this.#users = users;
    this.#groups = groups;
    this.#directory = directory;
  }

  /** The user these credentials prove, and how (`password` or `ldap`). */
  async login(name: string, password: string): Promise<{ user: UserRow; via: 'password' | 'ldap' }> {
    const key = name.toLowerCase();
    const f = this.#failures.get(key);
    if (f && f.lockedUntil > Date.now())
      throw new TernError(
        'unauthorized',
        `too many failed logins for ${name}; try again in ${Math.ceil((f.lockedUntil - Date.now()) / 1000)} s`,
      );
    try {
      const done = await this.#check(name, password);
      this.#failures.delete(key);
      await this.#users.recordLogin(done.user.id);
      return done;
    } catch (err) {
      if (err instanceof TernError && err.code === 'unauthorized') this.#failed(key);
      throw err;
    }
  }

  async #check(name: string, password: string): Promise<{ user: UserRow; via: 'password' | 'ldap' }> {
    const local = await this.#users.find(name);
    if (local && local.source === 'local') {
      if (local.passwordHash === null || !(await verifyPassword(password, local.passwordHash))) {
        if (local.passwordHash === null) await spendPasswordTime(password);
        throw wrong();
      }
      if (local.disabled) throw new TernError('unauthorized', `user ${local.name} is disabled`);
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
    const user =
      (await this.#users.find(found.username)) ??
      (await this.#users.create({ name: found.username, displayName: found.displayName, source: 'ldap' }));
    if (user.disabled) throw new TernError('unauthorized', `user ${user.name} is disabled`);
    await this.#groups.setMappedMembership(user.id, groups);
    return { user, via: 'ldap' };
  }

  #failed(key: string): void {
    const t = Date.now();
    const f = this.#failures.get(key);
    const next =
      f && t - f.first < failureWindowMs
        ? { ...f, count: f.count + 1 }
        : { count: 1, first: t, lockedUntil: 0 };
    if (next.count >= maxFailures) next.lockedUntil = t + lockMs;
    this.#failures.set(key, next);
    // Bounded: old entries go when the map grows large.
    if (this.#failures.size > 10_000)
      for (const [k, v] of this.#failures) if (t - v.first > failureWindowMs) this.#failures.delete(k);
  }
}
