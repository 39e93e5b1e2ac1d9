/** /api/v1/sites: the other clusters this one trusts. */
import { siteRoutes as routes } from '../../wire/api/sites.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function siteRoutes(app: App, s: ApiServices): void {
  serve(app, routes.self, 'cluster.read', async () => ({
    url: s.joining.url,
    fingerprint: s.joining.caFingerprint,
  }));

  serve(app, routes.list, 'cluster.read', async () => ({ items: await s.sites.list() }));

  serve(app, routes.add, 'cluster.write', async (req, reply) =>
    reply.status(201).send(await s.sites.add(req.body)),
  );

  serve(app, routes.show, 'cluster.read', async (req) => s.sites.show(req.params.site));

  serve(app, routes.remove, 'cluster.write', async (req, reply) => {
    await s.sites.remove(req.params.site);
    return reply.code(204).send(null);
  });
}
