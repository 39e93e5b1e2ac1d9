/** /api/v1/groups: groups that give their members a role. */
import { groupRoutes as routes } from '../../wire/api/groups.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function groupRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'identity.read', async () => ({ items: await s.groups.list() }));

  serve(app, routes.create, 'identity.write', async (req, reply) =>
    reply.status(201).send(await s.groups.create(req.body)),
  );

  serve(app, routes.remove, 'identity.write', async (req, reply) => {
    await s.groups.remove(req.params.group);
    return reply.code(204).send(null);
  });

  serve(app, routes.addMember, 'identity.write', async (req) => {
    await s.groups.addMember(req.params.group, (await s.users.get(req.params.user)).id);
    return s.groups.get(req.params.group);
  });

  serve(app, routes.removeMember, 'identity.write', async (req) => {
    await s.groups.removeMember(req.params.group, (await s.users.get(req.params.user)).id);
    return s.groups.get(req.params.group);
  });
}
