/** /api/v1/projects: quotas and members; /api/v1/audit: the audit log. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody, Name } from '../../wire/common.ts';
import { AuditRecord, CreateProjectRequest, Project, UpdateProjectRequest } from '../../wire/identity.ts';
import { principalOf } from '../auth/principal.ts';
import type { Member } from '../projects/store.ts';
import type { ApiServices, App } from './context.ts';

const ProjectRef = Type.Object({ project: Name });
const MemberRef = Type.Object({
  project: Name,
  kind: Type.Union([Type.Literal('user'), Type.Literal('group')]),
  member: Type.String({ minLength: 1, maxLength: 64 }),
});
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

/** A user with its groups, as project membership sees it. */
export async function memberOf(s: ApiServices, userId: string): Promise<Member> {
  return { userId, groups: (await s.users.groupsOf(userId)).map((g) => g.name) };
}

export function projectRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/projects',
    {
      config: { access: 'project.read' },
      schema: {
        summary: 'Projects with quota and usage (self-service users: their own)',
        tags: ['projects'],
        response: { 200: Type.Object({ items: Type.Array(Project) }), ...errors },
      },
    },
    async (req) => {
      const p = principalOf(req);
      if (p.permissions.has('project.write') || p.permissions.has('vm.all'))
        return { items: await s.projects.list() };
      return { items: p.userId ? await s.projects.list(await memberOf(s, p.userId)) : [] };
    },
  );

  app.post(
    '/api/v1/projects',
    {
      config: { access: 'project.write' },
      schema: {
        summary: 'Make a project',
        tags: ['projects'],
        body: CreateProjectRequest,
        response: { 201: Project, ...errors },
      },
    },
    async (req, reply) => reply.status(201).send(await s.projects.create(req.body)),
  );

  app.get(
    '/api/v1/projects/:project',
    {
      config: { access: 'project.read' },
      schema: {
        summary: 'Show a project',
        tags: ['projects'],
        params: ProjectRef,
        response: { 200: Project, ...errors },
      },
    },
    async (req) => {
      const p = principalOf(req);
      if (p.permissions.has('project.write') || p.permissions.has('vm.all'))
        return s.projects.get(req.params.project);
      const mine = p.userId ? await s.projects.namesFor(await memberOf(s, p.userId)) : [];
      if (!mine.includes(req.params.project))
        throw new TernError('not_found', `project ${req.params.project} does not exist`);
      return s.projects.get(req.params.project);
    },
  );

  app.patch(
    '/api/v1/projects/:project',
    {
      config: { access: 'project.write' },
      schema: {
        summary: 'Change a project’s description or quota (null: no limit)',
        tags: ['projects'],
        params: ProjectRef,
        body: UpdateProjectRequest,
        response: { 200: Project, ...errors },
      },
    },
    async (req) => s.projects.update(req.params.project, req.body),
  );

  app.delete(
    '/api/v1/projects/:project',
    {
      config: { access: 'project.write' },
      schema: {
        summary: 'Remove an empty project',
        tags: ['projects'],
        params: ProjectRef,
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (req, reply) => {
      await s.projects.remove(req.params.project);
      return reply.code(204).send(null);
    },
  );

  app.put(
    '/api/v1/projects/:project/members/:kind/:member',
    {
      config: { access: 'project.write' },
      schema: {
        summary: 'Let a user or group create in a project',
        tags: ['projects'],
        params: MemberRef,
        response: { 200: Project, ...errors },
      },
    },
    async (req) => {
      const { project, kind, member } = req.params;
      const id = kind === 'user' ? (await s.users.get(member)).id : (await s.groups.get(member)).name;
      await s.projects.addMember(project, kind, id);
      return s.projects.get(project);
    },
  );

  app.delete(
    '/api/v1/projects/:project/members/:kind/:member',
    {
      config: { access: 'project.write' },
      schema: {
        summary: 'Remove a member from a project',
        tags: ['projects'],
        params: MemberRef,
        response: { 200: Project, ...errors },
      },
    },
    async (req) => {
      const { project, kind, member } = req.params;
      const id = kind === 'user' ? ((await s.users.find(member))?.id ?? member) : member;
      await s.projects.removeMember(project, kind, id);
      return s.projects.get(project);
    },
  );

  app.get(
    '/api/v1/audit',
    {
      config: { access: 'audit.read' },
      schema: {
        summary: 'The audit log, newest first',
        tags: ['audit'],
        querystring: Type.Object(
          {
            actor: Type.Optional(Type.String({ maxLength: 200 })),
            action: Type.Optional(Type.String({ maxLength: 200, description: 'e.g. "POST /vms/:vm/start"' })),
            object: Type.Optional(Type.String({ maxLength: 500, description: 'prefix, e.g. vms/web-1' })),
            result: Type.Optional(
              Type.Union([Type.Literal('ok'), Type.Literal('denied'), Type.Literal('failed')]),
            ),
            since: Type.Optional(Type.String({ format: 'date-time' })),
            until: Type.Optional(Type.String({ format: 'date-time' })),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
            cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            items: Type.Array(AuditRecord),
            nextCursor: Type.Union([Type.String(), Type.Null()]),
          }),
          ...errors,
        },
      },
    },
    async (req) => {
      const { cursor, limit, ...filter } = req.query;
      return s.audit.query({ ...filter, limit: limit ?? 100, before: cursor ? Number(cursor) : undefined });
    },
  );
}
