/** /api/v1/vms/{vm}/{action}: power operations, each an asynchronous task. */
import type { FastifyReply } from 'fastify';
import { emptyBodyAsObject } from '../../http/errors.ts';
import { defaultRebootTimeoutSeconds, vmActionRoutes as routes } from '../../wire/api/vm-actions.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { type ForceParams, refuseReplica } from '../vms/power.ts';
import { admitStartUnlessHeld } from '../vms/start-host.ts';
import type { ApiServices, App } from './context.ts';
import { acceptVmTask } from './reply.ts';
import { serve } from './serve.ts';

/**
 * A start is admitted before it is accepted, so that of many starts at once those beyond what
 * the hosts hold are refused here with 409 and the reasons; the task keeps the room held.
 */
async function acceptStart(
  s: ApiServices,
  reply: FastifyReply,
  ref: string,
  kind: TaskKind<ForceParams>,
  force: boolean,
) {
  const row = await s.store.row(ref);
  refuseReplica(row);
  const stopped = row.state === 'stopped' || row.state === 'crashed' || row.state === 'missing';
  // A start already admitted is in flight: this one is refused for its lock, the room kept.
  const hold = stopped ? (await admitStartUnlessHeld(s, row))?.hold : undefined;
  try {
    return await acceptVmTask(s, reply, row.id, kind, (vmId) => ({ vmId, force }));
  } catch (err) {
    // Not accepted (another task has the VM, say): the room goes back, unless that task holds it.
    if (hold) s.placer.release(row.id, hold);
    throw err;
  }
}

export function vmActionRoutes(app: App, s: ApiServices): void {
  const opts = { preValidation: emptyBodyAsObject };
  serve(
    app,
    routes.start,
    'vm.write',
    async (req, reply) => acceptStart(s, reply, req.params.vm, s.kinds.vmStart, req.body?.force ?? false),
    opts,
  );
  serve(
    app,
    routes.stop,
    'vm.write',
    async (req, reply) =>
      acceptVmTask(s, reply, req.params.vm, s.kinds.vmStop, (vmId) => ({
        vmId,
        force: req.body?.force ?? false,
      })),
    opts,
  );
  serve(app, routes.pause, 'vm.write', async (req, reply) =>
    acceptVmTask(s, reply, req.params.vm, s.kinds.vmPause, (vmId) => ({ vmId })),
  );
  serve(app, routes.resume, 'vm.write', async (req, reply) =>
    acceptVmTask(s, reply, req.params.vm, s.kinds.vmResume, (vmId) => ({ vmId })),
  );
  serve(
    app,
    routes.shutdown,
    'vm.write',
    async (req, reply) => {
      const timeoutSeconds = req.body.timeoutSeconds ?? 60;
      const force = req.body.force ?? false;
      return acceptVmTask(s, reply, req.params.vm, s.kinds.vmShutdown, (vmId) => ({
        vmId,
        timeoutSeconds,
        force,
      }));
    },
    opts,
  );
  serve(
    app,
    routes.reboot,
    'vm.write',
    async (req, reply) =>
      acceptVmTask(s, reply, req.params.vm, s.kinds.vmReboot, (vmId) => ({
        vmId,
        force: req.body?.force ?? false,
        timeoutSeconds: req.body?.timeoutSeconds ?? defaultRebootTimeoutSeconds,
      })),
    opts,
  );
}
