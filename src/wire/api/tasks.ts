/** /api/v1/tasks: follow and cancel asynchronous operations. */
import { Type } from 'typebox';
import { ErrorBody, Uuid } from '../common.ts';
import { route } from '../route.ts';
import { Task, TaskState } from '../task.ts';

const TaskRef = Type.Object({ id: Uuid });

export const taskRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/tasks',
    summary: 'List tasks, newest first',
    tags: ['tasks'],
    query: Type.Object(
      {
        state: Type.Optional(TaskState),
        object: Type.Optional(
          Type.String({
            maxLength: 100,
            description: 'one of the objects it locks, exactly, e.g. vm:<id>',
          }),
        ),
        limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })),
        before: Type.Optional(Type.String({ maxLength: 40, description: 'createdAt of the last task seen' })),
      },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ items: Type.Array(Task) }), 400: ErrorBody },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/tasks/:id',
    summary: 'Show a task with its log',
    tags: ['tasks'],
    params: TaskRef,
    reply: { 200: Task, 404: ErrorBody },
  }),
  cancel: route({
    method: 'POST',
    path: '/api/v1/tasks/:id/cancel',
    summary: 'Ask a task to stop; it cleans up and ends cancelled',
    tags: ['tasks'],
    params: TaskRef,
    reply: { 200: Task, 404: ErrorBody, 409: ErrorBody },
  }),
};
