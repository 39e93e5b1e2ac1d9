/** /api/v1/vms/{vm}/disks and /snapshots: growing disks and VM snapshots. */
import { randomBytes } from 'node:crypto';
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { SnapshotName } from '../../wire/agent.ts';
import { VmRef } from '../../wire/api/vms.ts';
import { ErrorBody } from '../../wire/common.ts';
import { TaskAccepted } from '../../wire/task.ts';
import { DiskGiB, gibToBytes, VolumeRef } from '../../wire/vm.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { fitsPool, formatBytes } from '../placement/filters.ts';
import { type AttachParams, freeSlot, growth } from '../vms/disks.ts';
import { listSnapshots } from '../vms/snapshots.ts';
import type { ApiServices, App } from './context.ts';
import { accepted, acceptVmTask } from './reply.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export function vmStorageRoutes(app: App, s: ApiServices): void {
  app.post(
    '/api/v1/vms/:vm/disks/:index/resize',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Grow a disk: online when the VM runs, offline otherwise',
        tags: ['vm storage'],
        params: Type.Object({ vm: VmRef.properties.vm, index: Type.Integer({ minimum: 0, maximum: 15 }) }),
        body: Type.Object(
          {
            sizeGiB: DiskGiB('the new size'),
            growFs: Type.Optional(
              Type.Boolean({
                description:
                  'also grow the partition (growpart) and filesystem (resize2fs, xfs_growfs) on it inside a running Linux guest, through its guest agent; the task result says what was grown',
              }),
            ),
          },
          { additionalProperties: false },
        ),
        response: responses,
      },
    },
    async (req, reply) => {
      const sizeBytes = gibToBytes(req.body.sizeGiB);
      const row = await s.store.row(req.params.vm);
      const added = growth(row, req.params.index, sizeBytes);
      await admitDisk(s, row, vmSpecOf(row).disks[req.params.index].volume.pool, added);
      return acceptVmTask(s, reply, req.params.vm, s.kinds.diskResize, (vmId) => ({
        vmId,
        index: req.params.index,
        sizeBytes,
        ...(req.body.growFs ? { growFs: true } : {}),
      }));
    },
  );

  app.post(
    '/api/v1/vms/:vm/disks',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Add a disk: a new empty one (sizeGiB) or an existing volume; hot-plugged when the VM runs',
        tags: ['vm storage'],
        params: VmRef,
        body: Type.Union([
          Type.Object({ sizeGiB: DiskGiB('size of a new empty disk') }, { additionalProperties: false }),
          Type.Object({ volume: VolumeRef }, { additionalProperties: false }),
        ]),
        response: responses,
      },
    },
    async (req, reply) => {
      const row = await s.store.row(req.params.vm);
      const spec = vmSpecOf(row);
      const slot = freeSlot(spec);
      let params: AttachParams;
      if ('sizeGiB' in req.body) {
        const volume = {
          pool: spec.disks[0]?.volume.pool ?? 'local',
          // A name of its own: a disk once detached with --keep-disks may hold the plain one.
          path: `vms/${row.id}/disk${slot}-${randomBytes(4).toString('hex')}.qcow2`,
        };
        params = {
          vmId: row.id,
          disk: { volume, format: 'qcow2', readonly: false, slot },
          sizeBytes: gibToBytes(req.body.sizeGiB),
        };
        await admitDisk(s, row, volume.pool, params.sizeBytes ?? 0);
      } else {
        const { volume } = req.body;
        // Only VM disks (such as one detached with --keep-disks) attach writable: template
        // bases and library images are shared by others.
        // A seed holds its VM's cloud-init user-data, which may carry passwords.
        if (!volume.path.startsWith('vms/') || volume.path.endsWith('/seed.iso')) {
          throw new TernError(
            'invalid_request',
            `only VM disk volumes (vms/…) can be attached, not ${volume.path}`,
          );
        }
        // Self-service users bring back only this VM's own disks, never someone else's.
        if (!seesAllVms(principalOf(req)) && !volume.path.startsWith(`vms/${row.id}/`))
          throw new TernError('forbidden', `you may attach only disks of VM ${row.name} (vms/${row.id}/…)`);
        const owner = await s.store.volumeOwner(volume);
        if (owner)
          throw new TernError('conflict', `volume ${volume.pool}:${volume.path} is a disk of VM ${owner}`);
        const format = volume.path.endsWith('.qcow2') ? 'qcow2' : 'raw';
        params = { vmId: row.id, disk: { volume, format, readonly: false, slot } };
      }
      return accepted(reply, await s.tasks.submit(s.kinds.diskAttach, params, [`vm:${row.id}`]));
    },
  );

  app.delete(
    '/api/v1/vms/:vm/disks/:index',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Remove a disk (hot-unplugged when the VM runs); its volume is deleted unless keep=true',
        tags: ['vm storage'],
        params: Type.Object({ vm: VmRef.properties.vm, index: Type.Integer({ minimum: 0, maximum: 15 }) }),
        querystring: Type.Object({ keep: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: responses,
      },
    },
    async (req, reply) => {
      const keep = req.query.keep ?? false;
      // A kept volume counts against no quota: self-service disks go when they are removed.
      if (keep && !seesAllVms(principalOf(req)))
        throw new TernError(
          'forbidden',
          'keeping a removed disk needs an operator; it would count against no quota',
        );
      return acceptVmTask(s, reply, req.params.vm, s.kinds.diskDetach, (vmId) => ({
        vmId,
        index: req.params.index,
        keep,
      }));
    },
  );

  app.get(
    '/api/v1/vms/:vm/snapshots',
    {
      config: { access: 'vm.read' },
      schema: {
        summary: "List a VM's snapshots",
        tags: ['vm storage'],
        params: VmRef,
        response: {
          200: Type.Object({
            items: Type.Array(Type.Object({ name: Type.String(), createdAt: Type.String() })),
          }),
          404: ErrorBody,
        },
      },
    },
    async (req) => ({ items: await listSnapshots(s, (await s.store.get(req.params.vm)).id) }),
  );

  app.post(
    '/api/v1/vms/:vm/snapshots',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Snapshot every disk of a VM at once (running: filesystems frozen through the guest agent)',
        tags: ['vm storage'],
        params: VmRef,
        body: Type.Object({ name: SnapshotName }, { additionalProperties: false }),
        response: responses,
      },
    },
    async (req, reply) => {
      return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotCreate, (vmId) => ({
        vmId,
        name: req.body.name,
      }));
    },
  );

  const SnapshotRef = Type.Object({ vm: VmRef.properties.vm, name: SnapshotName });

  app.post(
    '/api/v1/vms/:vm/snapshots/:name/revert',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Revert a stopped VM to a snapshot',
        tags: ['vm storage'],
        params: SnapshotRef,
        response: responses,
      },
    },
    async (req, reply) => {
      return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotRevert, (vmId) => ({
        vmId,
        name: req.params.name,
      }));
    },
  );

  app.delete(
    '/api/v1/vms/:vm/snapshots/:name',
    {
      config: { access: 'vm.write' },
      schema: {
        summary: 'Delete a snapshot',
        tags: ['vm storage'],
        params: SnapshotRef,
        response: responses,
      },
    },
    async (req, reply) => {
      return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotDelete, (vmId) => ({
        vmId,
        name: req.params.name,
      }));
    },
  );
}

/**
 * Refuses, before any task, disk growth that the VM's pool cannot promise under the storage
 * overcommit (its host's last report of free space), or beyond the VM's project quota. The
 * quota check is serialized with other admissions of the project, but the use only grows when
 * the task has run: two disk requests racing each other may both pass.
 */
async function admitDisk(s: ApiServices, row: VmTable, poolName: string, addBytes: number): Promise<void> {
  if (addBytes <= 0) return;
  if (row.hostId) {
    const host = await s.hosts.get(row.hostId);
    const pool = host.facts?.pools.find((p) => p.name === poolName);
    const { storageOvercommit } = await s.placer.settings.get();
    if (pool && !fitsPool(pool.freeBytes, addBytes, storageOvercommit))
      throw new TernError(
        'no_capacity',
        `pool ${poolName} on host ${host.name} cannot take ${formatBytes(addBytes)} more of disk: ${formatBytes(pool.freeBytes)} free × storageOvercommit ${storageOvercommit}`,
        { pool: poolName, host: host.name, freeBytes: pool.freeBytes, bytes: addBytes, storageOvercommit },
      );
  }
  if (row.project) await s.projects.admit(row.project, { diskBytes: addBytes }, async () => undefined);
}
