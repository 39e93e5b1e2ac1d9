/** /api/v1/vms: the VM inventory and VM creation and deletion. */
import { TernError } from '../../errors.ts';
import { vmRoutes as routes } from '../../wire/api/vms.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import { createVm } from '../vms/create-vm.ts';
import type { ApiServices, App } from './context.ts';
import { memberOf } from './projects.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function vmRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'vm.read', async (req) => {
    const p = principalOf(req);
    return s.store.list({
      state: req.query.state,
      host: req.query.host,
      namePrefix: req.query.name,
      ownerId: seesAllVms(p) ? undefined : (p.userId ?? '-'),
      limit: req.query.limit ?? 100,
      after: req.query.cursor,
    });
  });

  serve(app, routes.create, 'vm.write', async (req, reply) => {
    const p = principalOf(req);
    const { task, vm } = await createVm(s, req.body, {
      userId: p.userId,
      seesAllVms: seesAllVms(p),
      member: () => (p.userId ? memberOf(s, p.userId) : Promise.resolve(null)),
    });
    return accepted(reply, task, { vm });
  });

  serve(app, routes.show, 'vm.read', async (req) => s.store.get(req.params.vm));

  serve(app, routes.remove, 'vm.delete', async (req, reply) => {
    const vm = await s.store.get(req.params.vm);
    await s.replications.refuseDelete(await s.store.row(vm.id));
    if (req.query.keepDisks && !seesAllVms(principalOf(req)))
      throw new TernError(
        'forbidden',
        'self-service VMs take their disks with them: keepDisks needs an operator',
      );
    const task = await s.tasks.submit(
      s.kinds.vmDelete,
      { vmId: vm.id, keepDisks: req.query.keepDisks ?? false, force: req.query.force ?? false },
      [`vm:${vm.id}`],
    );
    return accepted(reply, task);
  });

  serve(app, routes.console, 'vm.write', async (req) => {
    const row = await s.store.row(req.params.vm);
    if (!row.hostId) return { text: '' };
    return { text: await s.hosts.client(row.hostId).console(row.id, req.query.bytes ?? 16384) };
  });
}
