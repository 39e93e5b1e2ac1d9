/** /api/v1/tokens: API tokens, one's own or, as admin, anyone's. */
import { Type } from 'typebox';
import { ApiToken, CreateTokenRequest } from '../identity.ts';
import { route } from '../route.ts';
import { identityErrors as errors } from './session.ts';

export const tokenRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/tokens',
    summary: 'API tokens: one’s own; every token with all=true (identity.read)',
    tags: ['identity'],
    query: Type.Object({ all: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    reply: { 200: Type.Object({ items: Type.Array(ApiToken) }), ...errors },
  }),
  create: route({
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
  revoke: route({
    method: 'DELETE',
    path: '/api/v1/tokens/:id',
    summary: 'Revoke an API token (one’s own; any, as admin)',
    tags: ['identity'],
    params: Type.Object({ id: Type.String({ maxLength: 36 }) }),
    reply: { 204: Type.Null(), ...errors },
  }),
};
