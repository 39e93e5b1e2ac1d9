/**
 * Each route says who may call it beside its handler (`config: { access }`). A route that says
 * nothing refuses to be registered, so nothing is reachable by default; what each route needs
 * is collected for the guard's tests and the OpenAPI document.
 */
import type { Route } from '../../wire/route.ts';
import type { RouteRule } from '../auth/permissions.ts';
import type { App } from './context.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Who may call the route: declared beside its handler, checked by the guard. */
    access?: RouteRule;
    /** The route's declaration, for the OpenAPI document. */
    route?: Route;
  }
}

/**
 * Refuses routes without an access rule. The maps fill, by `METHOD /route`, as routes register:
 * what each needs, and the declaration each was served from (serve.ts).
 */
export function requireAccess(app: App): {
  access: ReadonlyMap<string, RouteRule>;
  declared: ReadonlyMap<string, Route>;
} {
  const access = new Map<string, RouteRule>();
  const declared = new Map<string, Route>();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      const rule = (route.config as { access?: RouteRule } | undefined)?.access;
      if (!rule) throw new Error(`route ${method} ${route.url} does not declare its access`);
      access.set(`${method} ${route.url}`, rule);
      const decl = (route.config as { route?: Route } | undefined)?.route;
      if (decl) declared.set(`${method} ${route.url}`, decl);
    }
  });
  return { access, declared };
}
