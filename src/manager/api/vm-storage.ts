/** /api/v1/vms/{vm}/disks and /snapshots: growing disks and VM snapshots. */
import { randomBytes } from 'node:crypto';
import { TernError } from '../../errors.ts';
import { vmStorageRoutes as routes } from '../../wire/api/vm-storage.ts';
import { gibToBytes } from '../../wire/vm.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import type { VmTable } from '../db/schema.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { fitsPool, formatBytes } from '../placement/filters.ts';
import { type AttachParams, freeSlot, growth } from '../vms/disks.ts';
import { listSnapshots } from '../vms/snapshots.ts';
import type { ApiServices, App } from './context.ts';
import { accepted, acceptVmTask } from './reply.ts';
import { serve } from './serve.ts';

export function vmStorageRoutes(app: App, s: ApiServices): void {
  serve(app, routes.resizeDisk, 'vm.write', async (req, reply) => {
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
  });

  serve(app, routes.attachDisk, 'vm.write', async (req, reply) => {
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
  });

  serve(app, routes.detachDisk, 'vm.write', async (req, reply) => {
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
  });

  serve(app, routes.snapshots, 'vm.read', async (req) => ({
    items: await listSnapshots(s, (await s.store.get(req.params.vm)).id),
  }));

  serve(app, routes.createSnapshot, 'vm.write', async (req, reply) => {
    return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotCreate, (vmId) => ({
      vmId,
      name: req.body.name,
    }));
  });

  serve(app, routes.revertSnapshot, 'vm.write', async (req, reply) => {
    return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotRevert, (vmId) => ({
      vmId,
      name: req.params.name,
    }));
  });

  serve(app, routes.removeSnapshot, 'vm.write', async (req, reply) => {
    return acceptVmTask(s, reply, req.params.vm, s.kinds.snapshotDelete, (vmId) => ({
      vmId,
      name: req.params.name,
    }));
  });
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
