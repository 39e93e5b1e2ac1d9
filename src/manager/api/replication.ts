/** /api/v1/replications: replicated VMs, their recovery points, and a cycle run now. */
import { replicationRoutes as routes } from '../../wire/api/replication.ts';
import { submitCycle } from '../replication/cycle.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function replicationRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'replication.read', async () => ({ items: await s.replications.list() }));

  serve(app, routes.create, 'replication.write', async (req, reply) =>
    reply.status(201).send(await s.replications.create(req.body)),
  );

  serve(app, routes.show, 'replication.read', async (req) => s.replications.show(req.params.replication));

  serve(app, routes.pause, 'replication.write', async (req) => s.replications.pause(req.params.replication));

  serve(app, routes.resume, 'replication.write', async (req) =>
    s.replications.resume(req.params.replication),
  );

  serve(app, routes.remove, 'replication.write', async (req, reply) => {
    const note = await s.replications.remove(req.params.replication, req.query.force ?? false);
    if (note) req.auditDetail = note;
    return reply.code(204).send(null);
  });

  serve(app, routes.points, 'replication.read', async (req) => ({
    items: await s.replications.pointsWire(req.params.replication),
  }));

  serve(app, routes.cycle, 'replication.write', async (req, reply) =>
    accepted(reply, await submitCycle(s, s.kinds.replicationCycle, req.params.replication)),
  );
}
