/**
 * A VM asked for through the API: checked against what self-service users may ask, planned,
 * placed (holding its room when created to start), admitted to its project's quota, recorded,
 * its user-data kept as a secret and its creation task submitted. A step that fails undoes
 * those before it, so a refused request leaves nothing behind.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { Image } from '../../wire/image.ts';
import type { Task } from '../../wire/task.ts';
import type { Template } from '../../wire/template.ts';
import type { CpuMode, CreateVmRequest, Vm } from '../../wire/vm.ts';
import { groupsNamed, joinGroups } from '../cluster/groups.ts';
import { baselineOf, type ClusterSnapshot, existingPool } from '../cluster/inventory.ts';
import type { ImageStore } from '../library/images.ts';
import { imageNamed, imagePools, templateNamed } from '../library/lookup.ts';
import { type NicDeps, networksOf, type PlannedNic, planNics } from '../networks/nics.ts';
import type { VmGroup } from '../placement/model.ts';
import type { Member, ProjectStore } from '../projects/store.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { TaskEngine, TaskKind } from '../tasks/engine.ts';
import { type CreateParams, userDataSecret } from './create.ts';
import type { VmDeps } from './deps.ts';
import { planVm, randomMac } from './plan.ts';
import { newVmRow } from './store.ts';

export interface CreateVmDeps extends VmDeps, NicDeps {
  networkSync: { settled(): Promise<void> };
  images: ImageStore;
  projects: ProjectStore;
  secrets: SecretStore;
  tasks: TaskEngine;
  kinds: { vmCreate: TaskKind<CreateParams> };
}

/** Who asks: the owner of the new VM, and (asked only when needed) its project membership. */
export interface Requester {
  userId: string | null;
  seesAllVms: boolean;
  member: () => Promise<Member | null>;
}

export async function createVm(
  d: CreateVmDeps,
  body: CreateVmRequest,
  who: Requester,
): Promise<{ task: Task; vm: Vm }> {
  if (!who.seesAllVms) selfServiceLimits(body);
  const template = body.template ? await templateNamed(d, body.template) : null;
  const image = body.image ? await imageNamed(d.images, body.image, 'disk') : null;
  const iso = body.iso ? await imageNamed(d.images, body.iso, 'iso') : null;
  const id = randomUUID();
  const clientMachineId = randomUUID();
  // A network made a moment ago may still be on its way to the hosts: placement sees it
  // once they have answered.
  if (body.nics?.some((n) => n.mode === 'network')) await d.networkSync.settled();
  const snapshot = await d.placer.snapshot();
  const cpuMode = body.cpuMode ?? 'compat';
  const groups = await groupsNamed(d.db, body.groups ?? []);
  // Every NIC's MAC, and a managed network's address, from the inventory; held for this VM
  // until it is recorded (or refused).
  const nics = await planNics(d, body.nics ?? [{ mode: 'user' }]);
  try {
    return await recordVm(d, body, who, {
      template,
      image,
      iso,
      id,
      clientMachineId,
      snapshot,
      cpuMode,
      groups,
      nics,
    });
  } finally {
    d.networks.release(nics.map((n) => n.row));
  }
}

async function recordVm(
  d: CreateVmDeps,
  body: CreateVmRequest,
  who: Requester,
  c: {
    template: Template | null;
    image: Image | null;
    iso: Image | null;
    id: string;
    clientMachineId: string;
    snapshot: ClusterSnapshot;
    cpuMode: CpuMode;
    groups: VmGroup[];
    nics: PlannedNic[];
  },
): Promise<{ task: Task; vm: Vm }> {
  const { template, image, iso, id, clientMachineId, snapshot, cpuMode, groups, nics } = c;
  // The pool decides the disks' place before a host is chosen: the one asked for, the
  // template's, or the usual local one.
  const plan = planVm(
    body,
    template,
    id,
    defaultPool(snapshot),
    () => randomMac(randomBytes),
    clientMachineId,
    {
      image,
      iso,
      nics,
    },
  );
  const diskPool = plan.volumes[0]?.volume.pool ?? body.pool ?? 'local';
  const templateHost = template ? await d.templates.hostOf(template.name) : null;
  // The library items it reads must be reachable from its host.
  const media = await imagePools(d.images, snapshot, [image, iso]);
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
    networks: networksOf(plan.spec),
    cpu:
      cpuMode === 'host'
        ? { mode: 'host' as const }
        : { mode: 'compat' as const, model: baselineOf(snapshot).model },
    groups,
  };
  const what = `VM ${body.name}`;
  // CPU and memory are admitted by a start: created to start, the VM holds its room from
  // here (the task's start keeps it); created stopped, it needs room for its disks only.
  const admitted = body.start
    ? await d.placer.reserve(id, async () => ({
        hostId: await d.placer.choose(demand, await d.placer.snapshot(id), what),
        vcpus: demand.vcpus,
        memoryMiB: demand.memoryMiB,
      }))
    : null;
  const hostId = admitted?.hostId ?? (await d.placer.chooseStopped(demand, snapshot, what));
  plan.spec.cpuModel = cpuMode === 'host' ? 'host' : baselineOf(snapshot).model;
  const project = await d.projects.choose(
    body.project,
    who.seesAllVms || !who.userId ? null : await who.member(),
  );
  const row = {
    ...newVmRow(plan, hostId, template?.name ?? null, clientMachineId, null, cpuMode),
    image: image?.name ?? null,
    ownerId: who.userId,
    project,
  };
  const insert = () =>
    d.store.insert(
      row,
      nics.map((n) => n.row),
    );
  const vm = await (project
    ? d.projects.admit(
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
    d.placer.release(id);
    throw err;
  });
  await joinGroups(d.db, id, groups);
  try {
    const { userData, ...seed } = plan.seed;
    if (userData !== undefined)
      await d.secrets.put(userDataSecret(id), userData, {
        kind: 'user-data',
        object: `vm:${id}`,
        ownerId: who.userId,
      });
    const task = await d.tasks.submit(
      d.kinds.vmCreate,
      {
        vmId: id,
        volumes: plan.volumes,
        seed,
        ...(userData !== undefined ? { userDataSecret: userDataSecret(id) } : {}),
        start: body.start ?? false,
      },
      [`vm:${id}`],
    );
    return { task, vm };
  } catch (err) {
    d.placer.release(id);
    await d.secrets.removeFor(`vm:${id}`);
    await d.store.remove(id);
    throw err;
  }
}

/**
 * What self-service users may not ask for: placement groups and host bridges are shared with
 * everyone else (they steer other people's placement, or reach networks the user may not).
 * Managed networks are theirs to use: each NIC there has its own address and anti-spoofing.
 */
function selfServiceLimits(body: { groups?: string[]; nics?: { mode: string }[] }): void {
  if (body.groups?.length)
    throw new TernError('forbidden', 'placement groups are operator work; create the VM without groups');
  if (body.nics?.some((n) => n.mode === 'bridge'))
    throw new TernError(
      'forbidden',
      'bridged networks (a host bridge) are operator work; self-service VMs use user networking or a managed network',
    );
}

/** Where a VM without a pool or template gets its disks: `local`, or the pool every host has. */
function defaultPool(snapshot: { hosts: { pools: readonly { name: string }[] }[] }): string {
  const first = snapshot.hosts[0]?.pools[0]?.name;
  return snapshot.hosts.some((h) => h.pools.some((p) => p.name === 'local')) || !first ? 'local' : first;
}
