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
  /** Attempts under way per name: parallel guesses count before their answers come. */
  readonly #pending = new Map<string, number>();

  constructor(users: UserStore, groups: GroupStore, directory: Directory) {
    this.#users = users;
    this.#groups = groups;
    this.#directory = directory;
  }

  /** The user these credentials prove, and how (`password` or `ldap`). */
  async login(name: string, password: string): Promise<{ user: UserRow; via: 'password' | 'ldap' }> {
    const key = name.toLowerCase();
    const f = this.#failures.get(key);
    const pending = this.#pending.get(key) ?? 0;
    if ((f && f.lockedUntil > Date.now()) || (f?.count ?? 0) + pending >= maxFailures)
      throw new TernError(
        'unauthorized',
        `too many failed logins for ${name}; try again in ${Math.max(1, Math.ceil(((f?.lockedUntil ?? 0) - Date.now()) / 1000))} s`,
      );
    this.#pending.set(key, pending + 1);
    try {
      const done = await this.#check(name, password);
      this.#failures.delete(key);
      await this.#users.recordLogin(done.user.id);
      return done;
    } catch (err) {
      if (err instanceof TernError && err.code === 'unauthorized') this.#failed(key);
      throw err;
    } finally {
      const left = (this.#pending.get(key) ?? 1) - 1;
      if (left > 0) this.#pending.set(key, left);
      else this.#pending.delete(key);
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
