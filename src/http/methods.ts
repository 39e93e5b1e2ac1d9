/**
 * The methods each path answers to, learnt from the routes as they are added, so that a
 * request with another method is told 405 and what is allowed, not that the path is absent.
 */
import type { FastifyInstance } from 'fastify';

export type AllowedMethods = (path: string) => string[];

export function learnMethods(app: FastifyInstance): AllowedMethods {
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const segments = route.url
      .split('/')
      .map((seg) =>
        seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
      );
    routes.push({ pattern: new RegExp(`^${segments.join('/')}$`), methods: [route.method].flat() });
  });
  return (path) => [...new Set(routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods))].sort();
}
