/** /api/v1/templates: what VMs are made from; sealing a VM into one; deleting unused ones. */
import type { FastifyReply } from 'fastify';
import { TernError } from '../../errors.ts';
import { templateRoutes as routes } from '../../wire/api/templates.ts';
import type { CreateTemplateRequest } from '../../wire/template.ts';
import { gibToBytes } from '../../wire/vm.ts';
import { planSeal } from '../library/generalize.ts';
import { imageNamed } from '../library/lookup.ts';
import { refuseIfLinked } from '../library/template-delete.ts';
import { type FromImageParams, templateDiskOf } from '../library/template-from-image.ts';
import { osOfTemplate } from '../library/templates.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { ApiServices, App } from './context.ts';
import { accepted } from './reply.ts';
import { serve } from './serve.ts';

export function templateRoutes(app: App, s: ApiServices): void {
  serve(app, routes.list, 'library.read', async () => ({ items: await s.templates.list() }));

  serve(app, routes.show, 'library.read', async (req) => s.templates.get(req.params.name));

  serve(app, routes.create, 'library.write', async (req, reply) => {
    if (await s.templates.has(req.body.name))
      throw new TernError('conflict', `template ${req.body.name} exists`);
    if (req.body.fromImage !== undefined)
      return acceptFromImage(s, reply, req.body, s.kinds.templateFromImage);
    if (req.body.fromVm === undefined)
      throw new TernError(
        'invalid_request',
        'a template is made from a VM (fromVm) or an image (fromImage)',
        {
          field: 'fromVm',
        },
      );
    const defaults = imageOnly.filter((f) => req.body[f] !== undefined);
    if (defaults.length > 0)
      throw new TernError(
        'invalid_request',
        `${defaults.join(', ')}: a template sealed from a VM takes the VM's own settings`,
        { field: defaults[0] },
      );
    const vm = await s.store.get(req.body.fromVm);
    // Refused here with the way out; the task decides again on what it finds then.
    planSeal(vm, req.body.force ?? false, await osOfTemplate(s.templates, vm.template));
    const task = await s.tasks.submit(
      s.kinds.templateSeal,
      {
        vmId: vm.id,
        name: req.body.name,
        description: req.body.description ?? `sealed from VM ${vm.name}`,
        force: req.body.force ?? false,
      },
      [`vm:${vm.id}`, `template:${req.body.name}`],
    );
    return accepted(reply, task);
  });

  serve(app, routes.remove, 'library.write', async (req, reply) => {
    await s.templates.get(req.params.name);
    await refuseIfLinked(s.templates, req.params.name);
    const task = await s.tasks.submit(s.kinds.templateDelete, { name: req.params.name }, [
      `template:${req.params.name}`,
    ]);
    return accepted(reply, task);
  });
}

/** What only a template from an image takes: a sealed VM brings its own. */
const imageOnly = ['vcpus', 'memoryMiB', 'diskGiB', 'firmware', 'os'] as const;

async function acceptFromImage(
  s: ApiServices,
  reply: FastifyReply,
  body: CreateTemplateRequest,
  kind: TaskKind<FromImageParams>,
) {
  if (body.fromVm !== undefined)
    throw new TernError('invalid_request', 'a template is made from a VM or from an image, not both', {
      field: 'fromImage',
    });
  if (body.force !== undefined)
    throw new TernError('invalid_request', 'force goes with fromVm: an image is not sealed', {
      field: 'force',
    });
  const image = await imageNamed(s.images, body.fromImage!, 'disk');
  const sizeBytes = body.diskGiB !== undefined ? gibToBytes(body.diskGiB) : null;
  if (sizeBytes !== null && sizeBytes < image.virtualBytes)
    throw new TernError(
      'invalid_request',
      `diskGiB is smaller than image ${image.name}'s virtual size (${image.virtualBytes} bytes); disks only grow`,
      { field: 'diskGiB', minimumBytes: image.virtualBytes },
    );
  const hostId = (await s.images.row(image.name)).hostId!;
  const task = await s.tasks.submit(
    kind,
    {
      name: body.name,
      image: image.name,
      description: body.description ?? `made from image ${image.name}`,
      hostId,
      source: image.volume,
      disk: templateDiskOf(body.name, image.volume.pool),
      sizeBytes,
      vcpus: body.vcpus ?? 1,
      memoryMiB: body.memoryMiB ?? 1024,
      firmware: body.firmware ?? 'bios',
      os: body.os ?? null,
    },
    [`template:${body.name}`, `image:${image.name}`],
  );
  return accepted(reply, task);
}
