/** /api/v1/alerts: conditions that need a person (a VM paused on a full pool, a crash). */
import { Type } from 'typebox';
import { Alert } from '../alert.ts';
import { route } from '../route.ts';

export const alertRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/alerts',
    summary: 'List alerts, newest first; active ones only unless all=true',
    tags: ['alerts'],
    query: Type.Object(
      {
        all: Type.Optional(Type.Boolean()),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
      },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ items: Type.Array(Alert) }) },
  }),
};
