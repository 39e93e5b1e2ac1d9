/** /api/v1/session: logging in and out (web sessions), who the caller is, one's own password. */
import { Type } from 'typebox';
import { ErrorBody } from '../common.ts';
import { LoginRequest, Password, Whoami } from '../identity.ts';
import { route } from '../route.ts';

/** The refusals the identity routes (session, tokens, users, groups, LDAP) may answer. */
export const identityErrors = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
};

export const sessionRoutes = {
  login: route({
    method: 'POST',
    path: '/api/v1/session',
    summary: 'Log in with a password (sets the session cookie)',
    tags: ['identity'],
    body: LoginRequest,
    reply: { 200: Whoami, ...identityErrors },
  }),
  show: route({
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
    reply: { 204: Type.Null(), ...identityErrors },
  }),
};
