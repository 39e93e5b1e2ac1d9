/** /api/v1/identity/ldap: the directory people may log in through. */
import { ldapRoutes as routes } from '../../wire/api/ldap.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function ldapRoutes(app: App, s: ApiServices): void {
  serve(app, routes.show, 'identity.read', async () => ({ settings: await s.directory.settings() }));

  serve(app, routes.set, 'identity.write', async (req) => {
    await s.directory.set(req.body.settings, req.body.bindPassword);
    return { settings: req.body.settings };
  });

  serve(app, routes.remove, 'identity.write', async (_req, reply) => {
    await s.directory.clear();
    return reply.code(204).send(null);
  });
}
