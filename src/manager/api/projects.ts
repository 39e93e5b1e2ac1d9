/** /api/v1/projects: quotas and members. */
import { TernError } from '../../errors.ts';
import { projectRoutes as routes } from '../../wire/api/projects.ts';
import { principalOf } from '../auth/principal.ts';
import type { Member } from '../projects/store.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

/** A user with its groups, as project membership sees it. */
export async function memberOf(s: ApiServices, userId: string): Promise<Member> {
  return { userId, groups: (await s.users.groupsOf(userId)).map((g) => g.name) };
}

export function projectRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'project.read', async (req) => {
    const p = principalOf(req);
    if (p.permissions.has('project.write') || p.permissions.has('vm.all'))
      return { items: await s.projects.list() };
    return { items: p.userId ? await s.projects.list(await memberOf(s, p.userId)) : [] };
  });

  serve(app, routes.create, 'project.write', async (req, reply) =>
    reply.status(201).send(await s.projects.create(req.body)),
  );

  serve(app, routes.show, 'project.read', async (req) => {
    const p = principalOf(req);
    if (p.permissions.has('project.write') || p.permissions.has('vm.all'))
      return s.projects.get(req.params.project);
    const mine = p.userId ? await s.projects.namesFor(await memberOf(s, p.userId)) : [];
    if (!mine.includes(req.params.project))
      throw new TernError('not_found', `project ${req.params.project} does not exist`);
    return s.projects.get(req.params.project);
  });

  serve(app, routes.update, 'project.write', async (req) => s.projects.update(req.params.project, req.body));

  serve(app, routes.remove, 'project.write', async (req, reply) => {
    await s.projects.remove(req.params.project);
    return reply.code(204).send(null);
  });

  serve(app, routes.addMember, 'project.write', async (req) => {
    const { project, kind, member } = req.params;
    const id = kind === 'user' ? (await s.users.get(member)).id : (await s.groups.get(member)).name;
    await s.projects.addMember(project, kind, id);
    return s.projects.get(project);
  });

  serve(app, routes.removeMember, 'project.write', async (req) => {
    const { project, kind, member } = req.params;
    const id = kind === 'user' ? ((await s.users.find(member))?.id ?? member) : member;
    await s.projects.removeMember(project, kind, id);
    return s.projects.get(project);
  });
}
