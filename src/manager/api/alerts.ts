/** /api/v1/alerts: conditions that need a person (a VM paused on a full pool, a crash). */
import { Type } from 'typebox';
import { Alert } from '../../wire/alert.ts';
import type { ApiServices, App } from './context.ts';

export function alertRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/alerts',
    {
      schema: {
        summary: 'List alerts, newest first; active ones only unless all=true',
        tags: ['alerts'],
        querystring: Type.Object(
          {
            all: Type.Optional(Type.Boolean()),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Alert) }) },
      },
    },
    async (req) => ({ items: await s.alerts.list(!req.query.all, req.query.limit ?? 100) }),
  );
}
