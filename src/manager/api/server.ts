/**
 * The manager's REST API: every route under /api/v1 needs a token except health and the
 * OpenAPI document, which is generated from the same schemas that validate requests.
 */
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify from 'fastify';
import { ajvOptions, installErrorHandling } from '../../http/errors.ts';
import { type Logger, quietRequests } from '../../log.ts';
import type { Principal } from '../auth/tokens.ts';
import { alertRoutes } from './alerts.ts';
import { clusterRoutes } from './cluster.ts';
import type { ApiServices, App } from './context.ts';
import { eventRoutes } from './events.ts';
import { haRoutes } from './ha.ts';
import { hostRoutes } from './hosts.ts';
import { imagePoolRoutes } from './image-pools.ts';
import { imageRoutes } from './images.ts';
import { migrationRoutes } from './migration.ts';
import { taskRoutes } from './tasks.ts';
import { templateRoutes } from './templates.ts';
import { vmActionRoutes } from './vm-actions.ts';
import { vmStorageRoutes } from './vm-storage.ts';
import { vmRoutes } from './vms.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
}

const publicRoutes = new Set(['/api/v1/health', '/api/v1/openapi.json']);

export async function buildApi(s: ApiServices, log: Logger): Promise<App> {
  const app: App = Fastify({
    loggerInstance: quietRequests(log),
    bodyLimit: 256 * 1024,
    ajv: ajvOptions,
  }).withTypeProvider<TypeBoxTypeProvider>();
  installErrorHandling(app);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Tern API', version: '1', description: 'Virtualization manager for KVM/QEMU hosts' },
      components: { securitySchemes: { token: { type: 'http', scheme: 'bearer' } } },
      security: [{ token: [] }],
    },
  });

  // Decided on the route the router matched, never on the raw URL (which may be encoded
  // differently), and denied by default: only the listed routes go without a token.
  app.addHook('onRequest', async (req) => {
    const route = req.routeOptions.url;
    if (route !== undefined && publicRoutes.has(route)) return;
    req.principal = await s.tokens.authenticate(req.headers.authorization);
  });

  app.get('/api/v1/health', { schema: { hide: true } }, async () => ({ ok: true }));
  app.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  vmRoutes(app, s);
  migrationRoutes(app, s);
  clusterRoutes(app, s);
  haRoutes(app, s);
  vmActionRoutes(app, s);
  vmStorageRoutes(app, s);
  taskRoutes(app, s);
  hostRoutes(app, s);
  templateRoutes(app, s);
  imageRoutes(app, s);
  alertRoutes(app, s);
  imagePoolRoutes(app, s);
  eventRoutes(app, s);
  return app;
}
