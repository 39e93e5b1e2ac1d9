/** How every asynchronous operation answers: 202, the task, and where to follow it. */
import type { FastifyReply } from 'fastify';
import { taskRoutes } from '../../wire/api/tasks.ts';
import { pathOf } from '../../wire/route.ts';
import type { Task } from '../../wire/task.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { ApiServices } from './context.ts';

export function accepted(reply: FastifyReply, task: Task, extra: Record<string, unknown> = {}) {
  return reply
    .status(202)
    .header('location', pathOf(taskRoutes.show, { id: task.id }))
    .send({ task, ...extra });
}

/** An operation on one VM: its task, locking the VM, answered 202. */
export async function acceptVmTask<P>(
  s: ApiServices,
  reply: FastifyReply,
  ref: string,
  kind: TaskKind<P>,
  params: (vmId: string) => P,
) {
  const vm = await s.store.get(ref);
  return accepted(reply, await s.tasks.submit(kind, params(vm.id), [`vm:${vm.id}`]));
}
