/** /api/v1/hosts: the hosts the manager drives, how they join and leave, their orphans and maintenance. */
import { TernError } from '../../errors.ts';
import { hostRoutes as routes } from '../../wire/api/hosts.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function hostRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'host.read', async () => ({ items: await s.hosts.list() }));
  serve(app, routes.show, 'host.read', async (req) => s.hosts.get(req.params.host));
  serve(app, routes.add, 'host.write', async (req, reply) => {
    const token = await s.joinTokens.create(req.body.name, s.joining.caFingerprint, s.joining.url);
    return reply.code(201).send(token);
  });
  serve(app, routes.remove, 'host.write', async (req, reply) => {
    await s.hosts.remove(req.params.host);
    return reply.code(204).send(null);
  });

  // Orphans: what a host holds for VMs the inventory does not know (docs/storage.md).
  serve(app, routes.orphans, 'host.read', async (req) => ({ items: await s.orphans.list(req.params.host) }));
  serve(app, routes.adoptOrphan, 'host.write', async (req) =>
    s.orphans.adopt(req.params.host, req.params.id),
  );
  serve(app, routes.removeOrphan, 'host.write', async (req, reply) => {
    await s.orphans.remove(req.params.host, req.params.id, req.query.force ?? false);
    return reply.code(204).send(null);
  });

  // Maintenance: the host's running VMs go elsewhere, and it takes no new ones.
  serve(app, routes.enterMaintenance, 'host.write', async (req, reply) => {
    const host = await s.hosts.get(req.params.host);
    const task = await s.tasks.submit(
      s.kinds.maintenance,
      { hostId: host.id, stopUnmovable: req.body.stopUnmovable ?? false },
      [`host:${host.id}`],
    );
    return accepted(reply, task);
  });
  serve(app, routes.leaveMaintenance, 'host.write', async (req) => {
    const host = await s.hosts.get(req.params.host);
    if (host.state !== 'maintenance')
      throw new TernError('conflict', `host ${host.name} is not in maintenance`);
    return s.hosts.endMaintenance(host.id);
  });
}
