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

/** Refuses routes without an access rule; the map fills, by `METHOD /route`, as routes register. */
export function requireAccess(app: App): ReadonlyMap<string, RouteRule> {
  const access = new Map<string, RouteRule>();
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) {
      if (method === 'HEAD' || method === 'OPTIONS') continue;
      const rule = (route.config as { access?: RouteRule } | undefined)?.access;
      if (!rule) throw new Error(`route ${method} ${route.url} does not declare its access`);
      access.set(`${method} ${route.url}`, rule);
    }
  });
  return access;
}
