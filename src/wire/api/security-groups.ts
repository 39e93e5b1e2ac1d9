/** /api/v1/security-groups: the rules a NIC's port is given (anti-spoofing always comes first). */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { CreateSecurityGroupRequest, SecurityGroup, UpdateSecurityGroupRequest } from '../network.ts';
import { route } from '../route.ts';

const GroupRef = Type.Object({ group: Name });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export const securityGroupRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/security-groups',
    summary: 'Security groups',
    tags: ['networks'],
    reply: { 200: Type.Object({ items: Type.Array(SecurityGroup) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/security-groups',
    summary: 'Make a security group (inbound denied and outbound allowed unless said otherwise)',
    tags: ['networks'],
    body: CreateSecurityGroupRequest,
    reply: { 201: SecurityGroup, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/security-groups/:group',
    summary: 'Show a security group',
    tags: ['networks'],
    params: GroupRef,
    reply: { 200: SecurityGroup, ...errors },
  }),
  update: route({
    method: 'PATCH',
    path: '/api/v1/security-groups/:group',
    summary: 'Change a security group’s defaults or rules (the rules given replace all of them)',
    tags: ['networks'],
    params: GroupRef,
    body: UpdateSecurityGroupRequest,
    reply: { 200: SecurityGroup, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/security-groups/:group',
    summary: 'Delete a security group no NIC uses',
    tags: ['networks'],
    params: GroupRef,
    reply: { 204: Type.Null(), ...errors },
  }),
};
