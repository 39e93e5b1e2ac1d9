/** /api/v1/projects: quotas and members. */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { CreateProjectRequest, Project, UpdateProjectRequest } from '../identity.ts';
import { route } from '../route.ts';

const ProjectRef = Type.Object({ project: Name });
const MemberRef = Type.Object({
  project: Name,
  kind: Type.Union([Type.Literal('user'), Type.Literal('group')]),
  member: Type.String({ minLength: 1, maxLength: 64 }),
});
/** The refusals every project route may answer. */
export const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
export const projectRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/projects',
    summary: 'Projects with quota and usage (self-service users: their own)',
    tags: ['projects'],
    reply: { 200: Type.Object({ items: Type.Array(Project) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/projects',
    summary: 'Make a project',
    tags: ['projects'],
    body: CreateProjectRequest,
    reply: { 201: Project, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/projects/:project',
    summary: 'Show a project',
    tags: ['projects'],
    params: ProjectRef,
    reply: { 200: Project, ...errors },
  }),
  update: route({
    method: 'PATCH',
    path: '/api/v1/projects/:project',
    summary: 'Change a project’s description or quota (null: no limit)',
    tags: ['projects'],
    params: ProjectRef,
    body: UpdateProjectRequest,
    reply: { 200: Project, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/projects/:project',
    summary: 'Remove an empty project',
    tags: ['projects'],
    params: ProjectRef,
    reply: { 204: Type.Null(), ...errors },
  }),
  addMember: route({
    method: 'PUT',
    path: '/api/v1/projects/:project/members/:kind/:member',
    summary: 'Let a user or group create in a project',
    tags: ['projects'],
    params: MemberRef,
    reply: { 200: Project, ...errors },
  }),
  removeMember: route({
    method: 'DELETE',
    path: '/api/v1/projects/:project/members/:kind/:member',
    summary: 'Remove a member from a project',
    tags: ['projects'],
    params: MemberRef,
    reply: { 200: Project, ...errors },
  }),
};
