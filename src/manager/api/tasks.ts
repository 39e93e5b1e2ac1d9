/** /api/v1/tasks: follow and cancel asynchronous operations. */
import { TernError } from '../../errors.ts';
import { taskRoutes as routes } from '../../wire/api/tasks.ts';
import { type Principal, principalOf, seesAllVms } from '../auth/principal.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

export function taskRoutes(app: App, s: ApiServices): void {
  /** Self-service users see only the tasks they asked for; for them the others do not exist. */
  const visibleTask = async (id: string, p: Principal, withLog = false) => {
    const task = await s.tasks.get(id, withLog);
    if (!seesAllVms(p) && (p.userId === null || task.requestedBy !== p.userId))
      throw new TernError('not_found', `task ${id} does not exist`);
    return task;
  };

  serve(app, routes.list, 'task.read', async (req) => {
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
  });

  serve(app, routes.show, 'task.read', async (req) => visibleTask(req.params.id, principalOf(req), true));

  serve(app, routes.cancel, 'task.write', async (req) => {
    await visibleTask(req.params.id, principalOf(req));
    return s.tasks.cancel(req.params.id);
  });
}
