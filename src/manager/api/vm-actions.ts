/** /api/v1/vms/{vm}/{action}: power operations, each an asynchronous task. */
import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import { emptyBodyAsObject } from '../../http/errors.ts';
import { VmRef } from '../../wire/api/vms.ts';
import { ErrorBody } from '../../wire/common.ts';
import { TaskAccepted } from '../../wire/task.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { ForceParams } from '../vms/power.ts';
import { defaultRebootTimeoutSeconds } from '../vms/reboot.ts';
import { admitStartUnlessHeld } from '../vms/start-host.ts';
import type { ApiServices, App } from './context.ts';
import { acceptVmTask } from './reply.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

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
  const simple = { pause: s.kinds.vmPause, resume: s.kinds.vmResume };
  const forceable = { start: s.kinds.vmStart, stop: s.kinds.vmStop };

  const summaries: Record<keyof typeof simple | keyof typeof forceable, string> = {
    start: 'Start a VM (with force, an unreachable one is forced off and started afresh)',
    stop: 'Force a VM off at once (no guest shutdown); an unreachable one only with force',
    pause: 'Pause a VM',
    resume: 'Resume a paused VM (also after a storage-full pause once space is free)',
  };
  for (const [action, kind] of Object.entries(simple) as [keyof typeof simple, (typeof simple)['pause']][]) {
    app.post(
      `/api/v1/vms/:vm/${action}`,
      {
        config: { access: 'vm.write' },
        schema: { summary: summaries[action], tags: ['vm actions'], params: VmRef, response: responses },
      },
      async (req, reply) => {
        return acceptVmTask(s, reply, req.params.vm, kind, (vmId) => ({ vmId }));
      },
    );
  }

  for (const [action, kind] of Object.entries(forceable) as [
    keyof typeof forceable,
    (typeof forceable)['start'],
  ][]) {
    app.post(
      `/api/v1/vms/:vm/${action}`,
      {
        config: { access: 'vm.write' },
        preValidation: emptyBodyAsObject,
        schema: {
          summary: summaries[action],
          tags: ['vm actions'],
          params: VmRef,
          body: Type.Optional(
            Type.Object(
              {
                force: Type.Optional(
                  Type.Boolean({
                    description:
                      'also end a QEMU whose monitor does not answer (an unreachable VM, whose guest may be alive)',
                  }),
                ),
              },
              { additionalProperties: false },
            ),
          ),
          response: responses,
        },
      },
      async (req, reply) => {
        const force = req.body?.force ?? false;
        if (action === 'start') return acceptStart(s, reply, req.params.vm, kind, force);
        return acceptVmTask(s, reply, req.params.vm, kind, (vmId) => ({ vmId, force }));
      },
    );
  }

  app.post(
    '/api/v1/vms/:vm/shutdown',
    {
      config: { access: 'vm.write' },
      preValidation: emptyBodyAsObject,
      schema: {
        summary: 'Shut a VM down: ACPI, then the guest agent; fails after the timeout unless forced',
        tags: ['vm actions'],
        params: VmRef,
        body: Type.Object(
          {
            timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, default: 60 })),
            force: Type.Optional(
              Type.Boolean({ description: 'power off when the guest does not shut down in time' }),
            ),
          },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const timeoutSeconds = req.body.timeoutSeconds ?? 60;
      const force = req.body.force ?? false;
      return acceptVmTask(s, reply, req.params.vm, s.kinds.vmShutdown, (vmId) => ({
        vmId,
        timeoutSeconds,
        force,
      }));
    },
  );

  app.post(
    '/api/v1/vms/:vm/reboot',
    {
      config: { access: 'vm.write' },
      preValidation: emptyBodyAsObject,
      schema: {
        summary:
          'Reboot a VM through its guest agent, or reset it with force; done when its host has seen the guest boot again and its guest agent answer again',
        tags: ['vm actions'],
        params: VmRef,
        body: Type.Optional(
          Type.Object(
            {
              force: Type.Optional(
                Type.Boolean({ description: 'a hard reset instead of asking the guest agent' }),
              ),
              timeoutSeconds: Type.Optional(
                Type.Integer({
                  minimum: 1,
                  maximum: 3600,
                  default: defaultRebootTimeoutSeconds,
                  description: 'how long to wait for the guest to come back',
                }),
              ),
            },
            { additionalProperties: false },
          ),
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      return acceptVmTask(s, reply, req.params.vm, s.kinds.vmReboot, (vmId) => ({
        vmId,
        force: req.body?.force ?? false,
        timeoutSeconds: req.body?.timeoutSeconds ?? defaultRebootTimeoutSeconds,
      }));
    },
  );
}
