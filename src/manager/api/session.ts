/** /api/v1/session: logging in and out (web sessions), who the caller is, one's own password. */
import { TernError } from '../../errors.ts';
import { sessionRoutes as routes } from '../../wire/api/session.ts';
import type { Whoami } from '../../wire/identity.ts';
import { cookieValue, type Principal, principalOf } from '../auth/principal.ts';
import { sessionCookie } from '../auth/sessions.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

/** Who a principal is, as the API tells it (a login's answer, GET /session). */
export function whoami(p: Principal): Whoami {
  return {
    user: p.name,
    userId: p.userId,
    roles: p.roles,
    permissions: [...p.permissions],
    via: p.via,
    tokenId: p.tokenId,
    expiresAt: p.expiresAt,
  };
}

export function sessionRoutes(app: App, s: ApiServices): void {
  serve(app, routes.login, 'public', async (req, reply) => {
    const { user, via } = await s.login.login(req.body.user, req.body.password, req.ip);
    const session = await s.sessions.create(user.id, req.ip);
    req.principal = await s.authenticator.sessionOf(user, session.expiresAt);
    req.auditVia = via;
    reply.header(
      'set-cookie',
      `${sessionCookie}=${session.value}; Path=/; HttpOnly; Secure; SameSite=Strict; Expires=${new Date(session.expiresAt).toUTCString()}`,
    );
    return whoami(req.principal);
  });

  serve(app, routes.show, 'authenticated', async (req) => whoami(principalOf(req)));

  serve(app, routes.logout, 'authenticated', async (req, reply) => {
    const value = cookieValue(req.headers.cookie, sessionCookie);
    if (value) await s.sessions.remove(value);
    reply.header('set-cookie', `${sessionCookie}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`);
    return reply.code(204).send(null);
  });

  serve(app, routes.changePassword, 'authenticated', async (req, reply) => {
    const p = principalOf(req);
    if (!p.userId) throw new TernError('invalid_request', 'this token has no user; it has no password');
    const user = await s.users.get(p.userId);
    await s.login.login(user.name, req.body.current, req.ip);
    await s.users.update(user.id, { password: req.body.password });
    return reply.code(204).send(null);
  });
}
