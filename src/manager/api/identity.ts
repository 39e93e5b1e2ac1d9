/**
 * Identity routes: logging in and out (web sessions), who am I, API tokens, users, groups,
 * and the directory people may log in through.
 */
import { TernError } from '../../errors.ts';
import { identityRoutes as routes } from '../../wire/api/identity.ts';
import type { Whoami } from '../../wire/identity.ts';
import { cookieValue, type Principal, principalOf } from '../auth/principal.ts';
import { sessionCookie } from '../auth/sessions.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

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

export function identityRoutes(app: App, s: ApiServices): void {
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

  serve(app, routes.session, 'authenticated', async (req) => whoami(principalOf(req)));

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

  serve(app, routes.tokens, 'authenticated', async (req) => {
    const p = principalOf(req);
    if (req.query.all) {
      if (!p.permissions.has('identity.read'))
        throw new TernError('forbidden', 'listing every token needs the permission identity.read');
      return { items: await s.tokens.list() };
    }
    return { items: p.userId ? await s.tokens.list(p.userId) : [] };
  });

  serve(app, routes.createToken, 'authenticated', async (req, reply) => {
    const p = principalOf(req);
    const forOther = req.body.user !== undefined && req.body.user !== p.name;
    if (forOther && !p.permissions.has('identity.write'))
      throw new TernError('forbidden', 'making a token for another user needs the permission identity.write');
    const userId = forOther ? (await s.users.get(req.body.user as string)).id : p.userId;
    if (!userId) throw new TernError('invalid_request', 'this token has no user; name one with "user"');
    // A token never holds more than what made it: its scopes are cut to the maker's rights.
    const scopes = forOther
      ? (req.body.scopes ?? null)
      : (req.body.scopes ?? (p.tokenId ? [...p.permissions] : null));
    if (!forOther && scopes) {
      const beyond = scopes.filter((x) => !p.permissions.has(x));
      if (beyond.length)
        throw new TernError('forbidden', `you cannot give a token what you lack: ${beyond.join(', ')}`);
    }
    let expiresAt = new Date(Date.now() + (req.body.expiresInDays ?? 90) * 86_400_000).toISOString();
    // A token never outlives the token that made it.
    if (!forOther && p.via === 'token' && p.expiresAt && p.expiresAt < expiresAt) expiresAt = p.expiresAt;
    const made = await s.tokens.create({ name: req.body.name, userId, scopes, expiresAt });
    return reply.status(201).send({ ...made, expiresAt });
  });

  serve(app, routes.revokeToken, 'authenticated', async (req, reply) => {
    const p = principalOf(req);
    const owner = await s.tokens.owner(req.params.id);
    if (owner !== p.userId && !p.permissions.has('identity.write'))
      throw new TernError('not_found', `token ${req.params.id} does not exist`);
    await s.tokens.revoke(req.params.id);
    return reply.code(204).send(null);
  });

  serve(app, routes.users, 'identity.read', async () => ({ items: await s.users.list() }));

  serve(app, routes.createUser, 'identity.write', async (req, reply) => {
    for (const g of req.body.groups ?? []) await s.groups.get(g);
    const row = await s.users.create(req.body);
    for (const g of req.body.groups ?? []) await s.groups.addMember(g, row.id);
    return reply.status(201).send(await s.users.toWire(row));
  });

  serve(app, routes.user, 'identity.read', async (req) => s.users.toWire(await s.users.get(req.params.user)));

  serve(app, routes.updateUser, 'identity.write', async (req) =>
    s.users.toWire(await s.users.update(req.params.user, req.body)),
  );

  serve(app, routes.removeUser, 'identity.write', async (req, reply) => {
    await s.users.remove(req.params.user);
    return reply.code(204).send(null);
  });

  serve(app, routes.groups, 'identity.read', async () => ({ items: await s.groups.list() }));

  serve(app, routes.createGroup, 'identity.write', async (req, reply) =>
    reply.status(201).send(await s.groups.create(req.body)),
  );

  serve(app, routes.removeGroup, 'identity.write', async (req, reply) => {
    await s.groups.remove(req.params.group);
    return reply.code(204).send(null);
  });

  serve(app, routes.addGroupMember, 'identity.write', async (req) => {
    await s.groups.addMember(req.params.group, (await s.users.get(req.params.user)).id);
    return s.groups.get(req.params.group);
  });

  serve(app, routes.removeGroupMember, 'identity.write', async (req) => {
    await s.groups.removeMember(req.params.group, (await s.users.get(req.params.user)).id);
    return s.groups.get(req.params.group);
  });

  serve(app, routes.ldap, 'identity.read', async () => ({ settings: await s.directory.settings() }));

  serve(app, routes.setLdap, 'identity.write', async (req) => {
    await s.directory.set(req.body.settings, req.body.bindPassword);
    return { settings: req.body.settings };
  });

  serve(app, routes.removeLdap, 'identity.write', async (_req, reply) => {
    await s.directory.clear();
    return reply.code(204).send(null);
  });
}
