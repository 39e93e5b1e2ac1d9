/** /api/v1/security-groups: rule sets for NICs; a change reaches the hosts with their ports. */
import { securityGroupRoutes as routes } from '../../wire/api/security-groups.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function securityGroupRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'network.read', async () => ({ items: await s.securityGroups.list() }));

  serve(app, routes.create, 'network.write', async (req, reply) =>
    reply.status(201).send(await s.securityGroups.create(req.body)),
  );

  serve(app, routes.show, 'network.read', async (req) => s.securityGroups.get(req.params.group));

  serve(app, routes.update, 'network.write', async (req) => {
    const group = await s.securityGroups.update(req.params.group, req.body);
    s.networkSync.changed();
    return group;
  });

  serve(app, routes.remove, 'network.write', async (req, reply) => {
    await s.securityGroups.remove(req.params.group);
    return reply.code(204).send(null);
  });
}
