/** /api/v1/templates: what VMs are made from; sealing a VM into one; deleting unused ones. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody, Name } from '../../wire/common.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { CreateTemplateRequest, Template } from '../../wire/template.ts';
import { planSeal } from '../library/generalize.ts';
import { refuseIfLinked, sealTask, templateDeleteTask } from '../library/seal.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';

export function templateRoutes(app: App, s: ApiServices): void {
  const seal = sealTask(s);
  const remove = templateDeleteTask(s);
  s.tasks.register(seal);
  s.tasks.register(remove);

  app.get(
    '/api/v1/templates',
    {
      schema: {
        summary: 'List templates',
        tags: ['library'],
        response: { 200: Type.Object({ items: Type.Array(Template) }) },
      },
    },
    async () => ({ items: await s.templates.list() }),
  );

  app.get(
    '/api/v1/templates/:name',
    {
      schema: {
        summary: 'Show a template',
        tags: ['library'],
        params: Type.Object({ name: Name }),
        response: { 200: Template, 404: ErrorBody },
      },
    },
    async (req) => s.templates.get(req.params.name),
  );

  app.post(
    '/api/v1/templates',
    {
      schema: {
        summary: 'Seal a VM into a template, generalizing it first',
        description:
          'A running Linux VM whose guest agent answers is generalized (machine-id emptied, SSH host keys removed, cloud-init cleaned), checked, shut down and copied. A VM that cannot be generalized (stopped, no guest agent, Windows) is refused with the way out, unless `force`: then it is sealed as it is and the template records the risk.',
        tags: ['library'],
        body: CreateTemplateRequest,
        response: { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      if (await s.templates.has(req.body.name))
        throw new TernError('conflict', `template ${req.body.name} exists`);
      const vm = await s.store.get(req.body.fromVm);
      // Refused here with the way out; the task decides again on what it finds then.
      planSeal(vm, req.body.force ?? false);
      const task = await s.tasks.submit(
        seal,
        {
          vmId: vm.id,
          name: req.body.name,
          description: req.body.description ?? `sealed from VM ${vm.name}`,
          force: req.body.force ?? false,
        },
        [`vm:${vm.id}`, `template:${req.body.name}`],
      );
      return accepted(reply, task);
    },
  );

  app.delete(
    '/api/v1/templates/:name',
    {
      schema: {
        summary: 'Delete a template no linked clone uses',
        tags: ['library'],
        params: Type.Object({ name: Name }),
        response: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      await s.templates.get(req.params.name);
      await refuseIfLinked(s.templates, req.params.name);
      const task = await s.tasks.submit(remove, { name: req.params.name }, [`template:${req.params.name}`]);
      return accepted(reply, task);
    },
  );
}
