/** /api/v1/vms: the VM inventory and VM creation and deletion. */
import { randomBytes, randomUUID } from 'node:crypto';
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody, Name, Page, PageQuery } from '../../wire/common.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { CreateVmRequest, PowerState, Vm } from '../../wire/vm.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import { groupsNamed, joinGroups } from '../cluster/groups.ts';
import { baselineOf, existingPool } from '../cluster/inventory.ts';
import { imageNamed, imagePools, templateNamed } from '../library/lookup.ts';
import { userDataSecret } from '../vms/create.ts';
import { planVm, randomMac } from '../vms/plan.ts';
import { newVmRow } from '../vms/store.ts';
import type { ApiServices, App } from './context.ts';
import { memberOf } from './projects.ts';
import { accepted } from './reply.ts';

export const VmRef = Type.Object({
  vm: Type.String({ minLength: 1, maxLength: 63, description: 'VM name or id' }),
});

export function vmRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/vms',
    {
      config: { access: 'vm.read' },
      schema: {
        summary: 'List VMs',
        tags: ['vms'],
        querystring: Type.Object(
          {
            ...PageQuery,
            state: Type.Optional(PowerState),
            host: Type.Optional(Name),
            name: Type.Optional(Type.String({ maxLength: 63, description: 'name prefix' })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Page(Vm), 400: ErrorBody },
      },
    },
    async (req) => {
      const p = principalOf(req);
      return s.store.list({
        state: req.query.state,
        host: req.query.host,
        namePrefix: req.query.name,
        ownerId: seesAllVms(p) ? undefined : (p.userId ?? '-'),
        limit: req.query.limit ?? 100,
        after: req.query.cursor,
      });
    },
  );

  app.post(
    '/api/v1/vms',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Create a VM from a template, a library image or with an empty disk (an ISO in its CD-ROM)',
        tags: ['vms'],
        body: CreateVmRequest,
        response: {
          202: Type.Object({ task: TaskAccepted.properties.task, vm: Vm }),
          400: ErrorBody,
          409: ErrorBody,
        },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      if (!seesAllVms(p)) selfServiceLimits(req.body);
      const template = req.body.template ? await templateNamed(s, req.body.template) : null;
      const image = req.body.image ? await imageNamed(s.images, req.body.image, 'disk') : null;
      const iso = req.body.iso ? await imageNamed(s.images, req.body.iso, 'iso') : null;
      const id = randomUUID();
      const clientMachineId = randomUUID();
      const snapshot = await s.placer.snapshot();
      const cpuMode = req.body.cpuMode ?? 'compat';
      const groups = await groupsNamed(s.db, req.body.groups ?? []);
      // The pool decides the disks' place before a host is chosen: the one asked for, the
      // template's, or the usual local one.
      const plan = planVm(
        req.body,
        template,
        id,
        defaultPool(snapshot),
        () => randomMac(randomBytes),
        clientMachineId,
        { image, iso },
      );
      const diskPool = plan.volumes[0]?.volume.pool ?? req.body.pool ?? 'local';
      const templateHost = template ? await s.templates.hostOf(template.name) : null;
      // The library items it reads must be reachable from its host.
      const media = await imagePools(s.images, snapshot, [image, iso]);
      const demand = {
        vcpus: plan.spec.vcpus,
        memoryMiB: plan.spec.memoryMiB,
        // Every new disk at the size the guest sees, a linked clone's overlay too (it may grow
        // to it); the template's base is written already.
        diskBytes: plan.diskSizes.reduce((a, b) => a + b, 0),
        pools: [
          diskPool,
          ...(template && templateHost ? [existingPool(snapshot, templateHost, template.disk)] : []),
          ...media,
        ],
        uefi: plan.spec.firmware === 'uefi',
        cpu:
          cpuMode === 'host'
            ? { mode: 'host' as const }
            : { mode: 'compat' as const, model: baselineOf(snapshot).model },
        groups,
      };
      const what = `VM ${req.body.name}`;
      // CPU and memory are admitted by a start: created to start, the VM holds its room from
      // here (the task's start keeps it); created stopped, it needs room for its disks only.
      const admitted = req.body.start
        ? await s.placer.reserve(id, async () => ({
            hostId: await s.placer.choose(demand, await s.placer.snapshot(id), what),
            vcpus: demand.vcpus,
            memoryMiB: demand.memoryMiB,
          }))
        : null;
      const hostId = admitted?.hostId ?? (await s.placer.chooseStopped(demand, snapshot, what));
      plan.spec.cpuModel = cpuMode === 'host' ? 'host' : baselineOf(snapshot).model;
      const project = await s.projects.choose(
        req.body.project,
        seesAllVms(p) || !p.userId ? null : await memberOf(s, p.userId),
      );
      const row = {
        ...newVmRow(plan, hostId, template?.name ?? null, clientMachineId, null, cpuMode),
        image: image?.name ?? null,
        ownerId: p.userId,
        project,
      };
      const insert = () => s.store.insert(row);
      const vm = await (project
        ? s.projects.admit(
            project,
            {
              vms: 1,
              vcpus: plan.spec.vcpus,
              memoryMiB: plan.spec.memoryMiB,
              diskBytes: plan.diskSizes.reduce((a, b) => a + b, 0),
            },
            insert,
          )
        : insert()
      ).catch((err: unknown) => {
        s.placer.release(id);
        throw err;
      });
      await joinGroups(s.db, id, groups);
      try {
        const { userData, ...seed } = plan.seed;
        if (userData !== undefined)
          await s.secrets.put(userDataSecret(id), userData, {
            kind: 'user-data',
            object: `vm:${id}`,
            ownerId: p.userId,
          });
        const task = await s.tasks.submit(
          s.kinds.vmCreate,
          {
            vmId: id,
            volumes: plan.volumes,
            seed,
            ...(userData !== undefined ? { userDataSecret: userDataSecret(id) } : {}),
            start: req.body.start ?? false,
          },
          [`vm:${id}`],
        );
        return accepted(reply, task, { vm });
      } catch (err) {
        s.placer.release(id);
        await s.secrets.removeFor(`vm:${id}`);
        await s.store.remove(id);
        throw err;
      }
    },
  );

  app.get(
    '/api/v1/vms/:vm',
    {
      config: { access: 'vm.read' },
      schema: { summary: 'Show a VM', tags: ['vms'], params: VmRef, response: { 200: Vm, 404: ErrorBody } },
    },
    async (req) => s.store.get(req.params.vm),
  );

  app.delete(
    '/api/v1/vms/:vm',
    {
      config: { access: 'vm.delete' },
      schema: {
        summary: 'Delete a VM (stopped, or with force), with or without its disks',
        tags: ['vms'],
        params: VmRef,
        querystring: Type.Object(
          { keepDisks: Type.Optional(Type.Boolean()), force: Type.Optional(Type.Boolean()) },
          { additionalProperties: false },
        ),
        response: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (req, reply) => {
      const vm = await s.store.get(req.params.vm);
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
    },
  );

  app.get(
    '/api/v1/vms/:vm/console',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'The tail of the serial console log',
        tags: ['vms'],
        params: VmRef,
        querystring: Type.Object(
          { bytes: Type.Optional(Type.Integer({ minimum: 1, maximum: 1024 * 1024, default: 16384 })) },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ text: Type.String() }), 404: ErrorBody },
      },
    },
    async (req) => {
      const row = await s.store.row(req.params.vm);
      if (!row.hostId) return { text: '' };
      return { text: await s.hosts.client(row.hostId).console(row.id, req.query.bytes ?? 16384) };
    },
  );
}

/**
 * What self-service users may not ask for: placement groups and host bridges are shared with
 * everyone else (they steer other people's placement, or reach networks the user may not).
 */
function selfServiceLimits(body: { groups?: string[]; nics?: { mode: string }[] }): void {
  if (body.groups?.length)
    throw new TernError('forbidden', 'placement groups are operator work; create the VM without groups');
  if (body.nics?.some((n) => n.mode !== 'user'))
    throw new TernError(
      'forbidden',
      'bridged networks are operator work; self-service VMs use user networking',
    );
}

/** Where a VM without a pool or template gets its disks: `local`, or the pool every host has. */
function defaultPool(snapshot: { hosts: { pools: readonly { name: string }[] }[] }): string {
  const first = snapshot.hosts[0]?.pools[0]?.name;
  return snapshot.hosts.some((h) => h.pools.some((p) => p.name === 'local')) || !first ? 'local' : first;
}
