/** /api/v1/groups: groups that give their members a role. */
import { Type } from 'typebox';
import { Name } from '../common.ts';
import { CreateGroupRequest, Group, UserName } from '../identity.ts';
import { route } from '../route.ts';
import { identityErrors as errors } from './session.ts';

const GroupRef = Type.Object({ group: Name });
const Membership = Type.Object({ group: Name, user: UserName });

export const groupRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/groups',
    summary: 'List groups',
    tags: ['identity'],
    reply: { 200: Type.Object({ items: Type.Array(Group) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/groups',
    summary: 'Make a group that gives its members a role',
    tags: ['identity'],
    body: CreateGroupRequest,
    reply: { 201: Group, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/groups/:group',
    summary: 'Remove a group',
    tags: ['identity'],
    params: GroupRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  addMember: route({
    method: 'PUT',
    path: '/api/v1/groups/:group/members/:user',
    summary: 'Add a user to a group',
    tags: ['identity'],
    params: Membership,
    reply: { 200: Group, ...errors },
  }),
  removeMember: route({
    method: 'DELETE',
    path: '/api/v1/groups/:group/members/:user',
    summary: 'Remove a user from a group',
    tags: ['identity'],
    params: Membership,
    reply: { 200: Group, ...errors },
  }),
};
