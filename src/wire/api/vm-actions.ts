/** /api/v1/vms/{vm}/{action}: power operations, each an asynchronous task. */
import { Type } from 'typebox';
import { ErrorBody } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { VmRef } from './vms.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

/** How long a reboot waits for the guest to come back unless told. */
export const defaultRebootTimeoutSeconds = 120;

const ForceBody = Type.Optional(
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
);

export const vmActionRoutes = {
  start: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/start',
    summary: 'Start a VM (with force, an unreachable one is forced off and started afresh)',
    tags: ['vm actions'],
    params: VmRef,
    body: ForceBody,
    reply: responses,
  }),
  stop: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/stop',
    summary: 'Force a VM off at once (no guest shutdown); an unreachable one only with force',
    tags: ['vm actions'],
    params: VmRef,
    body: ForceBody,
    reply: responses,
  }),
  pause: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/pause',
    summary: 'Pause a VM',
    tags: ['vm actions'],
    params: VmRef,
    reply: responses,
  }),
  resume: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/resume',
    summary: 'Resume a paused VM (also after a storage-full pause once space is free)',
    tags: ['vm actions'],
    params: VmRef,
    reply: responses,
  }),
  shutdown: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/shutdown',
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
    reply: responses,
  }),
  reboot: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/reboot',
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
    reply: responses,
  }),
};
