/** /api/v1/audit: the audit log. */
import { Type } from 'typebox';
import { AuditRecord } from '../identity.ts';
import { route } from '../route.ts';
import { errors } from './projects.ts';

export const auditRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/audit',
    summary: 'The audit log, newest first',
    tags: ['audit'],
    query: Type.Object(
      {
        actor: Type.Optional(Type.String({ maxLength: 200 })),
        action: Type.Optional(Type.String({ maxLength: 200, description: 'e.g. "POST /vms/:vm/start"' })),
        object: Type.Optional(Type.String({ maxLength: 500, description: 'prefix, e.g. vms/web-1' })),
        result: Type.Optional(
          Type.Union([Type.Literal('ok'), Type.Literal('denied'), Type.Literal('failed')]),
        ),
        since: Type.Optional(Type.String({ format: 'date-time' })),
        until: Type.Optional(Type.String({ format: 'date-time' })),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
        cursor: Type.Optional(Type.String({ pattern: '^[0-9]{1,15}$' })),
      },
      { additionalProperties: false },
    ),
    reply: {
      200: Type.Object({
        items: Type.Array(AuditRecord),
        nextCursor: Type.Union([Type.String(), Type.Null()]),
      }),
      ...errors,
    },
  }),
};
