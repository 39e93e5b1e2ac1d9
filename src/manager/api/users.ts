/** /api/v1/users: local and directory users. */
import { userRoutes as routes } from '../../wire/api/users.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function userRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'identity.read', async () => ({ items: await s.users.list() }));

  serve(app, routes.create, 'identity.write', async (req, reply) => {
    for (const g of req.body.groups ?? []) await s.groups.get(g);
    const row = await s.users.create(req.body);
    for (const g of req.body.groups ?? []) await s.groups.addMember(g, row.id);
    return reply.status(201).send(await s.users.toWire(row));
  });

  serve(app, routes.show, 'identity.read', async (req) => s.users.toWire(await s.users.get(req.params.user)));

  serve(app, routes.update, 'identity.write', async (req) =>
    s.users.toWire(await s.users.update(req.params.user, req.body)),
  );

  serve(app, routes.remove, 'identity.write', async (req, reply) => {
    await s.users.remove(req.params.user);
    return reply.code(204).send(null);
  });
}
