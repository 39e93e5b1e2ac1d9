/** /api/v1/templates: what VMs are made from; sealing a VM into one; deleting unused ones. */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { CreateTemplateRequest, Template } from '../template.ts';

export const templateRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/templates',
    summary: 'List templates',
    tags: ['library'],
    reply: { 200: Type.Object({ items: Type.Array(Template) }) },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/templates/:name',
    summary: 'Show a template',
    tags: ['library'],
    params: Type.Object({ name: Name }),
    reply: { 200: Template, 404: ErrorBody },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/templates',
    summary: 'Seal a VM into a template, generalizing it first, or make one from a library disk image',
    description:
      'A running Linux VM whose guest agent answers is generalized (machine-id emptied, SSH host keys removed, cloud-init cleaned), checked, shut down and copied. A VM that cannot be generalized (stopped, no guest agent, Windows) is refused with the way out, unless `force`: then it is sealed as it is and the template records the risk. With `fromImage` instead, the template disk is a flattened copy of a library disk image, with the vCPU, memory, disk size, firmware and OS kind given.',
    tags: ['library'],
    body: CreateTemplateRequest,
    reply: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/templates/:name',
    summary: 'Delete a template no linked clone uses',
    tags: ['library'],
    params: Type.Object({ name: Name }),
    reply: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
  }),
};
