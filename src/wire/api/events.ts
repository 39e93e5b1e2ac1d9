/** /api/v1/events: server-sent events of task progress and VM changes, optionally filtered. */
import { Type } from 'typebox';
import { route } from '../route.ts';

export const eventRoutes = {
  stream: route({
    method: 'GET',
    path: '/api/v1/events',
    summary: 'Stream of events (text/event-stream): task, vm, host and alert',
    tags: ['events'],
    query: Type.Object(
      {
        task: Type.Optional(Type.String({ maxLength: 36, description: 'only this task' })),
        vm: Type.Optional(Type.String({ maxLength: 36, description: 'only this VM id' })),
      },
      { additionalProperties: false },
    ),
    reply: {},
    rawReply: {
      contentType: 'text/event-stream',
      description:
        'a stream of server-sent events (`event: <type>`, `data: <JSON ManagerEvent>`) that stays open; HEAD answers the headers only',
    },
  }),
};
