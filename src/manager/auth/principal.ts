/**
 * Who is asking: a principal from an API token or a session cookie, with the permissions its
 * roles give (narrowed by the token's scopes). The request's principal is also kept in an
 * async context, so what it starts (a task) records who asked without every caller passing it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { TernError } from '../../errors.ts';
import { isRole, type Permission, type Role } from '../../wire/permissions.ts';
import type { UserRow, UserStore } from '../identity/users.ts';
import { effectivePermissions } from './permissions.ts';
import { type SessionStore, sessionCookie } from './sessions.ts';
import { parseScopes, type TokenStore } from './tokens.ts';

export interface Principal {
  /** null only for a token made before users existed. */
  userId: string | null;
  name: string;
  roles: Role[];
  permissions: Set<Permission>;
  via: 'token' | 'session';
  tokenId: string | null;
  expiresAt: string | null;
}

/** The request's principal; the API's guard has set it on every route that is not public. */
export function principalOf(req: { principal?: Principal }): Principal {
  if (!req.principal) throw new TernError('unauthorized', 'log in first');
  return req.principal;
}

/** Whether the VM permissions apply to every VM or only to the principal's own. */
export const seesAllVms = (p: Principal) => p.permissions.has('vm.all');

const actor = new AsyncLocalStorage<Principal>();
export const currentPrincipal = (): Principal | undefined => actor.getStore();
export const runAs = <T>(p: Principal, fn: () => T): T => actor.run(p, fn);

/** The value of one cookie in a Cookie header. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return undefined;
      }
    }
  }
  return undefined;
}

export class Authenticator {
  readonly #users: UserStore;
  readonly #tokens: TokenStore;
  readonly #sessions: SessionStore;

  constructor(users: UserStore, tokens: TokenStore, sessions: SessionStore) {
    this.#users = users;
    this.#tokens = tokens;
    this.#sessions = sessions;
  }

  async authenticate(headers: { authorization?: string; cookie?: string }): Promise<Principal> {
    const auth = headers.authorization;
    if (auth !== undefined) {
      const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
      if (!token) throw new TernError('unauthorized', 'the Authorization header must be "Bearer <token>"');
      return this.#fromToken(token);
    }
    const session = cookieValue(headers.cookie, sessionCookie);
    if (session) return this.#fromSession(session);
    throw new TernError(
      'unauthorized',
      'log in first: an API token (Authorization: Bearer <token>) or a session (POST /api/v1/session)',
    );
  }

  async #fromToken(token: string): Promise<Principal> {
    const row = await this.#tokens.verify(token);
    const how = {
      via: 'token' as const,
      tokenId: row.id,
      expiresAt: row.expiresAt,
      scopes: parseScopes(row.scopes),
    };
    if (row.userId !== null) {
      const user = await this.#users.find(row.userId);
      if (!user || user.disabled)
        throw new TernError('unauthorized', 'the API token’s user is disabled or gone');
      return this.#of(user, how);
    }
    // A token made before users existed: its role is its own.
    const roles = isRole(row.role) ? [row.role] : [];
    return {
      userId: null,
      name: row.name,
      roles,
      permissions: effectivePermissions(roles, how.scopes),
      via: 'token',
      tokenId: row.id,
      expiresAt: row.expiresAt,
    };
  }

  async #fromSession(value: string): Promise<Principal> {
    const s = await this.#sessions.find(value);
    if (!s) throw new TernError('unauthorized', 'the session has ended; log in again');
    const user = await this.#users.find(s.userId);
    if (!user || user.disabled) throw new TernError('unauthorized', 'the session’s user is disabled or gone');
    return this.sessionOf(user, s.expiresAt);
  }

  /** The principal of a session of `user` (e.g. one just made by a login). */
  sessionOf(user: UserRow, expiresAt: string): Promise<Principal> {
    return this.#of(user, { via: 'session', tokenId: null, expiresAt, scopes: null });
  }

  async #of(
    user: UserRow,
    how: {
      via: Principal['via'];
      tokenId: string | null;
      expiresAt: string | null;
      scopes: Permission[] | null;
    },
  ): Promise<Principal> {
    const roles = await this.#users.rolesOf(user);
    const { scopes, ...rest } = how;
    return {
      userId: user.id,
      name: user.name,
      roles,
      permissions: effectivePermissions(roles, scopes),
      ...rest,
    };
  }
}
