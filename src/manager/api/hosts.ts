/** /api/v1/hosts: the hosts the manager drives. */
import { Type } from 'typebox';
import { ErrorBody } from '../../wire/common.ts';
import { Host } from '../../wire/host.ts';
import type { ApiServices, App } from './context.ts';

export function hostRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/hosts',
    {
      schema: {
        summary: 'List hosts',
        tags: ['hosts'],
        response: { 200: Type.Object({ items: Type.Array(Host) }) },
      },
    },
    async () => ({ items: await s.hosts.list() }),
  );
  app.get(
    '/api/v1/hosts/:host',
    {
      schema: {
        summary: 'Show a host',
        tags: ['hosts'],
        params: Type.Object({ host: Type.String({ maxLength: 63 }) }),
        response: { 200: Host, 404: ErrorBody },
      },
    },
    async (req) => s.hosts.get(req.params.host),
  );
}
