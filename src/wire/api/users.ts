/** /api/v1/users: local and directory users, their roles and passwords. */
import { Type } from 'typebox';
import { CreateUserRequest, UpdateUserRequest, User } from '../identity.ts';
import { route } from '../route.ts';
import { identityErrors as errors } from './session.ts';

const UserRef = Type.Object({ user: Type.String({ minLength: 1, maxLength: 64 }) });

export const userRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/users',
    summary: 'List users',
    tags: ['identity'],
    reply: { 200: Type.Object({ items: Type.Array(User) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/users',
    summary: 'Make a local user',
    tags: ['identity'],
    body: CreateUserRequest,
    reply: { 201: User, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/users/:user',
    summary: 'Show a user',
    tags: ['identity'],
    params: UserRef,
    reply: { 200: User, ...errors },
  }),
  update: route({
    method: 'PATCH',
    path: '/api/v1/users/:user',
    summary: 'Change a user: name shown, password, role, disabled',
    tags: ['identity'],
    params: UserRef,
    body: UpdateUserRequest,
    reply: { 200: User, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/users/:user',
    summary: 'Remove a user (revokes its tokens)',
    tags: ['identity'],
    params: UserRef,
    reply: { 204: Type.Null(), ...errors },
  }),
};
