/** How every asynchronous operation answers: 202, the task, and where to follow it. */
import type { FastifyReply } from 'fastify';
import type { Task } from '../../wire/task.ts';

export function accepted(reply: FastifyReply, task: Task, extra: Record<string, unknown> = {}) {
  return reply
    .status(202)
    .header('location', `/api/v1/tasks/${task.id}`)
    .send({ task, ...extra });
}
