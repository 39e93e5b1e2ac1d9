/**
 * Identity routes: logging in and out (web sessions), who am I, API tokens, users, groups,
 * and the directory people may log in through.
 */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import {
  ApiToken,
  CreateGroupRequest,
  CreateTokenRequest,
  CreateUserRequest,
  DirectorySettings,
  Group,
  LoginRequest,
  Password,
  UpdateUserRequest,
  User,
  UserName,
  Whoami,
} from '../identity.ts';
import { route } from '../route.ts';

const UserRef = Type.Object({ user: Type.String({ minLength: 1, maxLength: 64 }) });
const GroupRef = Type.Object({ group: Name });
const Membership = Type.Object({ group: Name, user: UserName });
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export const identityRoutes = {
  login: route({
    method: 'POST',
    path: '/api/v1/session',
    summary: 'Log in with a password (sets the session cookie)',
    tags: ['identity'],
    body: LoginRequest,
    reply: { 200: Whoami, ...errors },
  }),
  session: route({
    method: 'GET',
    path: '/api/v1/session',
    summary: 'Who the caller is, with its roles and permissions',
    tags: ['identity'],
    reply: { 200: Whoami, 401: ErrorBody },
  }),
  logout: route({
    method: 'DELETE',
    path: '/api/v1/session',
    summary: 'Log out (ends the session)',
    tags: ['identity'],
    reply: { 204: Type.Null(), 401: ErrorBody },
  }),
  changePassword: route({
    method: 'PUT',
    path: '/api/v1/session/password',
    summary: 'Change one’s own password (needs the current one)',
    tags: ['identity'],
    body: Type.Object({ current: Password, password: Password }, { additionalProperties: false }),
    reply: { 204: Type.Null(), ...errors },
  }),
  tokens: route({
    method: 'GET',
    path: '/api/v1/tokens',
    summary: 'API tokens: one’s own; every token with all=true (identity.read)',
    tags: ['identity'],
    query: Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    reply: { 200: Type.Object({ items: Type.Array(ApiToken) }), ...errors },
  }),
  createToken: route({
    method: 'POST',
    path: '/api/v1/tokens',
    summary: 'Make an API token (shown once), for oneself or, as admin, for another user',
    tags: ['identity'],
    body: CreateTokenRequest,
    reply: {
      201: Type.Object({ token: Type.String(), id: Type.String(), expiresAt: Type.String() }),
      ...errors,
    },
  }),
  revokeToken: route({
    method: 'DELETE',
    path: '/api/v1/tokens/:id',
    summary: 'Revoke an API token (one’s own; any, as admin)',
    tags: ['identity'],
    params: Type.Object({ id: Type.String({ maxLength: 36 }) }),
    reply: { 204: Type.Null(), ...errors },
  }),
  users: route({
    method: 'GET',
    path: '/api/v1/users',
    summary: 'List users',
    tags: ['identity'],
    reply: { 200: Type.Object({ items: Type.Array(User) }), ...errors },
  }),
  createUser: route({
    method: 'POST',
    path: '/api/v1/users',
    summary: 'Make a local user',
    tags: ['identity'],
    body: CreateUserRequest,
    reply: { 201: User, ...errors },
  }),
  user: route({
    method: 'GET',
    path: '/api/v1/users/:user',
    summary: 'Show a user',
    tags: ['identity'],
    params: UserRef,
    reply: { 200: User, ...errors },
  }),
  updateUser: route({
    method: 'PATCH',
    path: '/api/v1/users/:user',
    summary: 'Change a user: name shown, password, role, disabled',
    tags: ['identity'],
    params: UserRef,
    body: UpdateUserRequest,
    reply: { 200: User, ...errors },
  }),
  removeUser: route({
    method: 'DELETE',
    path: '/api/v1/users/:user',
    summary: 'Remove a user (revokes its tokens)',
    tags: ['identity'],
    params: UserRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  groups: route({
    method: 'GET',
    path: '/api/v1/groups',
    summary: 'List groups',
    tags: ['identity'],
    reply: { 200: Type.Object({ items: Type.Array(Group) }), ...errors },
  }),
  createGroup: route({
    method: 'POST',
    path: '/api/v1/groups',
    summary: 'Make a group that gives its members a role',
    tags: ['identity'],
    body: CreateGroupRequest,
    reply: { 201: Group, ...errors },
  }),
  removeGroup: route({
    method: 'DELETE',
    path: '/api/v1/groups/:group',
    summary: 'Remove a group',
    tags: ['identity'],
    params: GroupRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  addGroupMember: route({
    method: 'PUT',
    path: '/api/v1/groups/:group/members/:user',
    summary: 'Add a user to a group',
    tags: ['identity'],
    params: Membership,
    reply: { 200: Group, ...errors },
  }),
  removeGroupMember: route({
    method: 'DELETE',
    path: '/api/v1/groups/:group/members/:user',
    summary: 'Remove a user from a group',
    tags: ['identity'],
    params: Membership,
    reply: { 200: Group, ...errors },
  }),
  ldap: route({
    method: 'GET',
    path: '/api/v1/identity/ldap',
    summary: 'The directory people log in through (its password is never shown)',
    tags: ['identity'],
    reply: { 200: Type.Object({ settings: Type.Union([DirectorySettings, Type.Null()]) }), ...errors },
  }),
  setLdap: route({
    method: 'PUT',
    path: '/api/v1/identity/ldap',
    summary: 'Log people in through an LDAP directory or Active Directory',
    tags: ['identity'],
    body: Type.Object(
      { settings: DirectorySettings, bindPassword: Password },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ settings: DirectorySettings }), ...errors },
  }),
  removeLdap: route({
    method: 'DELETE',
    path: '/api/v1/identity/ldap',
    summary: 'Stop logging people in through the directory',
    tags: ['identity'],
    reply: { 204: Type.Null(), ...errors },
  }),
};
