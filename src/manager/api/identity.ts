/**
 * Identity routes: logging in and out (web sessions), who am I, API tokens, users, groups,
 * and the directory people may log in through.
 */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody, Name } from '../../wire/common.ts';
import {
  ApiToken,
  CreateGroupRequest,
  CreateTokenRequest,
  CreateUserRequest,
  Group,
  LoginRequest,
  Password,
  UpdateUserRequest,
  User,
  UserName,
  Whoami,
} from '../../wire/identity.ts';
import { cookieValue, type Principal, principalOf } from '../auth/principal.ts';
import { sessionCookie } from '../auth/sessions.ts';
import { DirectorySettings } from '../identity/directory.ts';
import type { ApiServices, App } from './context.ts';

const UserRef = Type.Object({ user: Type.String({ minLength: 1, maxLength: 64 }) });
const GroupRef = Type.Object({ group: Name });
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

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
  app.post(
    '/api/v1/session',
    {
      config: { access: 'public' },
      schema: {
        summary: 'Log in with a password (sets the session cookie)',
        tags: ['identity'],
        body: LoginRequest,
        response: { 200: Whoami, ...errors },
      },
    },
    async (req, reply) => {
      const { user, via } = await s.login.login(req.body.user, req.body.password, req.ip);
      const session = await s.sessions.create(user.id, req.ip);
      req.principal = await s.authenticator.sessionOf(user, session.expiresAt);
      req.auditVia = via;
      reply.header(
        'set-cookie',
        `${sessionCookie}=${session.value}; Path=/; HttpOnly; Secure; SameSite=Strict; Expires=${new Date(session.expiresAt).toUTCString()}`,
      );
      return whoami(req.principal);
    },
  );

  app.get(
    '/api/v1/session',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'Who the caller is, with its roles and permissions',
        tags: ['identity'],
        response: { 200: Whoami, 401: ErrorBody },
      },
    },
    async (req) => whoami(principalOf(req)),
  );

  app.delete(
    '/api/v1/session',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'Log out (ends the session)',
        tags: ['identity'],
        response: { 204: Type.Null(), 401: ErrorBody },
      },
    },
    async (req, reply) => {
      const value = cookieValue(req.headers.cookie, sessionCookie);
      if (value) await s.sessions.remove(value);
      reply.header('set-cookie', `${sessionCookie}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0`);
      return reply.code(204).send(null);
    },
  );

  app.put(
    '/api/v1/session/password',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'Change one’s own password (needs the current one)',
        tags: ['identity'],
        body: Type.Object({ current: Password, password: Password }, { additionalProperties: false }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      if (!p.userId) throw new TernError('invalid_request', 'this token has no user; it has no password');
      const user = await s.users.get(p.userId);
      await s.login.login(user.name, req.body.current, req.ip);
      await s.users.update(user.id, { password: req.body.password });
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/tokens',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'API tokens: one’s own; every token with all=true (identity.read)',
        tags: ['identity'],
        querystring: Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(ApiToken) }), ...errors },
      },
    },
    async (req) => {
      const p = principalOf(req);
      if (req.query.all) {
        if (!p.permissions.has('identity.read'))
          throw new TernError('forbidden', 'listing every token needs the permission identity.read');
        return { items: await s.tokens.list() };
      }
      return { items: p.userId ? await s.tokens.list(p.userId) : [] };
    },
  );

  app.post(
    '/api/v1/tokens',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'Make an API token (shown once), for oneself or, as admin, for another user',
        tags: ['identity'],
        body: CreateTokenRequest,
        response: {
          201: Type.Object({ token: Type.String(), id: Type.String(), expiresAt: Type.String() }),
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const forOther = req.body.user !== undefined && req.body.user !== p.name;
      if (forOther && !p.permissions.has('identity.write'))
        throw new TernError(
          'forbidden',
          'making a token for another user needs the permission identity.write',
        );
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
    },
  );

  app.delete(
    '/api/v1/tokens/:id',
    {
      config: { access: 'authenticated' },
      schema: {
        summary: 'Revoke an API token (one’s own; any, as admin)',
        tags: ['identity'],
        params: Type.Object({ id: Type.String({ maxLength: 36 }) }),
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const owner = await s.tokens.owner(req.params.id);
      if (owner !== p.userId && !p.permissions.has('identity.write'))
        throw new TernError('not_found', `token ${req.params.id} does not exist`);
      await s.tokens.revoke(req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/users',
    {
      config: { access: 'identity.read' },
      schema: {
        summary: 'List users',
        tags: ['identity'],
        response: { 200: Type.Object({ items: Type.Array(User) }), ...errors },
      },
    },
    async () => ({ items: await s.users.list() }),
  );

  app.post(
    '/api/v1/users',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Make a local user',
        tags: ['identity'],
        body: CreateUserRequest,
        response: { 201: User, ...errors },
      },
    },
    async (req, reply) => {
      for (const g of req.body.groups ?? []) await s.groups.get(g);
      const row = await s.users.create(req.body);
      for (const g of req.body.groups ?? []) await s.groups.addMember(g, row.id);
      return reply.status(201).send(await s.users.toWire(row));
    },
  );

  app.get(
    '/api/v1/users/:user',
    {
      config: { access: 'identity.read' },
      schema: {
        summary: 'Show a user',
        tags: ['identity'],
        params: UserRef,
        response: { 200: User, ...errors },
      },
    },
    async (req) => s.users.toWire(await s.users.get(req.params.user)),
  );

  app.patch(
    '/api/v1/users/:user',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Change a user: name shown, password, role, disabled',
        tags: ['identity'],
        params: UserRef,
        body: UpdateUserRequest,
        response: { 200: User, ...errors },
      },
    },
    async (req) => s.users.toWire(await s.users.update(req.params.user, req.body)),
  );

  app.delete(
    '/api/v1/users/:user',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Remove a user (revokes its tokens)',
        tags: ['identity'],
        params: UserRef,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      await s.users.remove(req.params.user);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/api/v1/groups',
    {
      config: { access: 'identity.read' },
      schema: {
        summary: 'List groups',
        tags: ['identity'],
        response: { 200: Type.Object({ items: Type.Array(Group) }), ...errors },
      },
    },
    async () => ({ items: await s.groups.list() }),
  );

  app.post(
    '/api/v1/groups',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Make a group that gives its members a role',
        tags: ['identity'],
        body: CreateGroupRequest,
        response: { 201: Group, ...errors },
      },
    },
    async (req, reply) => reply.status(201).send(await s.groups.create(req.body)),
  );

  app.delete(
    '/api/v1/groups/:group',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Remove a group',
        tags: ['identity'],
        params: GroupRef,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      await s.groups.remove(req.params.group);
      return reply.code(204).send(null);
    },
  );

  const Membership = Type.Object({ group: Name, user: UserName });
  app.put(
    '/api/v1/groups/:group/members/:user',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Add a user to a group',
        tags: ['identity'],
        params: Membership,
        response: { 200: Group, ...errors },
      },
    },
    async (req) => {
      await s.groups.addMember(req.params.group, (await s.users.get(req.params.user)).id);
      return s.groups.get(req.params.group);
    },
  );

  app.delete(
    '/api/v1/groups/:group/members/:user',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Remove a user from a group',
        tags: ['identity'],
        params: Membership,
        response: { 200: Group, ...errors },
      },
    },
    async (req) => {
      await s.groups.removeMember(req.params.group, (await s.users.get(req.params.user)).id);
      return s.groups.get(req.params.group);
    },
  );

  app.get(
    '/api/v1/identity/ldap',
    {
      config: { access: 'identity.read' },
      schema: {
        summary: 'The directory people log in through (its password is never shown)',
        tags: ['identity'],
        response: { 200: Type.Object({ settings: Type.Union([DirectorySettings, Type.Null()]) }), ...errors },
      },
    },
    async () => ({ settings: await s.directory.settings() }),
  );

  app.put(
    '/api/v1/identity/ldap',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Log people in through an LDAP directory or Active Directory',
        tags: ['identity'],
        body: Type.Object(
          { settings: DirectorySettings, bindPassword: Password },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ settings: DirectorySettings }), ...errors },
      },
    },
    async (req) => {
      await s.directory.set(req.body.settings, req.body.bindPassword);
      return { settings: req.body.settings };
    },
  );

  app.delete(
    '/api/v1/identity/ldap',
    {
      config: { access: 'identity.write' },
      schema: {
        summary: 'Stop logging people in through the directory',
        tags: ['identity'],
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (_req, reply) => {
      await s.directory.clear();
      return reply.code(204).send(null);
    },
  );
}
