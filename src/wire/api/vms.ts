/** /api/v1/vms: the VM inventory and VM creation and deletion. */
import { Type } from 'typebox';
import { ErrorBody, Name, Page, PageQuery } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { CreateVmRequest, PowerState, Vm } from '../vm.ts';

export const VmRef = Type.Object({
  vm: Type.String({ minLength: 1, maxLength: 63, description: 'VM name or id' }),
});

export const vmRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/vms',
    summary: 'List VMs',
    tags: ['vms'],
    query: Type.Object(
      {
        ...PageQuery,
        state: Type.Optional(PowerState),
        host: Type.Optional(Name),
        name: Type.Optional(Type.String({ maxLength: 63, description: 'name prefix' })),
      },
      { additionalProperties: false },
    ),
    reply: { 200: Page(Vm), 400: ErrorBody },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/vms',
    summary: 'Create a VM from a template, a library image or with an empty disk (an ISO in its CD-ROM)',
    tags: ['vms'],
    body: CreateVmRequest,
    reply: {
      202: Type.Object({ task: TaskAccepted.properties.task, vm: Vm }),
      400: ErrorBody,
      409: ErrorBody,
    },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/vms/:vm',
    summary: 'Show a VM',
    tags: ['vms'],
    params: VmRef,
    reply: { 200: Vm, 404: ErrorBody },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/vms/:vm',
    summary: 'Delete a VM (stopped, or with force), with or without its disks',
    tags: ['vms'],
    params: VmRef,
    query: Type.Object(
      { keepDisks: Type.Optional(Type.Boolean()), force: Type.Optional(Type.Boolean()) },
      { additionalProperties: false },
    ),
    reply: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
  }),
  console: route({
    method: 'GET',
    path: '/api/v1/vms/:vm/console',
    summary: 'The tail of the serial console log',
    tags: ['vms'],
    params: VmRef,
    query: Type.Object(
      { bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 * 1024, default: 16384 })) },
      { additionalProperties: false },
    ),
    reply: { 200: Type.Object({ text: Type.String() }), 404: ErrorBody },
  }),
};
