/** /api/v1/hosts and /api/v1/templates: what the manager drives and what VMs are made from. */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../../wire/common.ts';
import { Host } from '../../wire/host.ts';
import { Template } from '../../wire/template.ts';
import type { ApiServices, App } from './context.ts';

export function inventoryRoutes(app: App, s: ApiServices): void {
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
  app.get(
    '/api/v1/templates',
    {
      schema: {
        summary: 'List templates',
        tags: ['library'],
        response: { 200: Type.Object({ items: Type.Array(Template) }) },
      },
    },
    async () => ({ items: await s.templates.list() }),
  );
  app.get(
    '/api/v1/templates/:name',
    {
      schema: {
        summary: 'Show a template',
        tags: ['library'],
        params: Type.Object({ name: Name }),
        response: { 200: Template, 404: ErrorBody },
      },
    },
    async (req) => s.templates.get(req.params.name),
  );
}
