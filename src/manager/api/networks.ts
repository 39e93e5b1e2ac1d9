/** /api/v1/networks: managed networks; every host is told of a change (networks/host-sync.ts). */
import { networkRoutes as routes } from '../../wire/api/networks.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function networkRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'network.read', async () => ({ items: await s.networks.list() }));

  serve(app, routes.create, 'network.write', async (req, reply) => {
    const network = await s.networks.create(req.body);
    s.networkSync.changed();
    return reply.status(201).send(network);
  });

  serve(app, routes.show, 'network.read', async (req) => s.networks.get(req.params.network));

  serve(app, routes.hosts, 'network.read', async (req) => {
    const row = await s.networks.row(req.params.network);
    const hosts = await s.hosts.list();
    const states = await s.networkSync.statesOf(row);
    return { items: hosts.map((h) => ({ host: h.name, state: states.get(h.id) ?? null })) };
  });

  serve(app, routes.remove, 'network.write', async (req, reply) => {
    await s.networks.remove(req.params.network);
    s.networkSync.changed();
    return reply.code(204).send(null);
  });
}
