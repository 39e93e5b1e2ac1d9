/** /api/v1/tasks: follow and cancel asynchronous operations. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody, Uuid } from '../../wire/common.ts';
import { Task, TaskState } from '../../wire/task.ts';
import { type Principal, principalOf, seesAllVms } from '../auth/principal.ts';
import type { ApiServices, App } from './context.ts';

export function taskRoutes(app: App, s: ApiServices): void {
  /** Self-service users see only the tasks they asked for; for them the others do not exist. */
  const visibleTask = async (id: string, p: Principal, withLog = false) => {
    const task = await s.tasks.get(id, withLog);
    if (!seesAllVms(p) && (p.userId === null || task.requestedBy !== p.userId))
      throw new TernError('not_found', `task ${id} does not exist`);
    return task;
  };

  app.get(
    '/api/v1/tasks',
    {
      schema: {
        summary: 'List tasks, newest first',
        tags: ['tasks'],
        querystring: Type.Object(
          {
            state: Type.Optional(TaskState),
            object: Type.Optional(
              Type.String({
                maxLength: 100,
                description: 'one of the objects it locks, exactly, e.g. vm:<id>',
              }),
            ),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
            before: Type.Optional(
              Type.String({ maxLength: 40, description: 'createdAt of the last task seen' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Task) }), 400: ErrorBody },
      },
    },
    async (req) => {
      const p = principalOf(req);
      return {
        items: await s.tasks.list({
          state: req.query.state,
          object: req.query.object,
          requestedBy: seesAllVms(p) ? undefined : (p.userId ?? '-'),
          limit: req.query.limit ?? 50,
          before: req.query.before,
        }),
      };
    },
  );

  app.get(
    '/api/v1/tasks/:id',
    {
      schema: {
        summary: 'Show a task with its log',
        tags: ['tasks'],
        params: Type.Object({ id: Uuid }),
        response: { 200: Task, 404: ErrorBody },
      },
    },
    async (req) => visibleTask(req.params.id, principalOf(req), true),
  );

  app.post(
    '/api/v1/tasks/:id/cancel',
    {
      schema: {
        summary: 'Ask a task to stop; it cleans up and ends cancelled',
        tags: ['tasks'],
        params: Type.Object({ id: Uuid }),
        response: { 200: Task, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => {
      await visibleTask(req.params.id, principalOf(req));
      return s.tasks.cancel(req.params.id);
    },
  );
}
