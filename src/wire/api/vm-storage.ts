/** /api/v1/vms/{vm}/disks and /snapshots: growing disks and VM snapshots. */
import { Type } from 'typebox';
import { SnapshotName } from '../agent.ts';
import { VmRef } from '../api/vms.ts';
import { ErrorBody } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { DiskGiB, VolumeRef } from '../vm.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const SnapshotRef = Type.Object({ vm: VmRef.properties.vm, name: SnapshotName });

export const vmStorageRoutes = {
  resizeDisk: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/disks/:index/resize',
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
    reply: responses,
  }),
  attachDisk: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/disks',
    summary: 'Add a disk: a new empty one (sizeGiB) or an existing volume; hot-plugged when the VM runs',
    tags: ['vm storage'],
    params: VmRef,
    body: Type.Union([
      Type.Object({ sizeGiB: DiskGiB('size of a new empty disk') }, { additionalProperties: false }),
      Type.Object({ volume: VolumeRef }, { additionalProperties: false }),
    ]),
    reply: responses,
  }),
  detachDisk: route({
    method: 'DELETE',
    path: '/api/v1/vms/:vm/disks/:index',
    summary: 'Remove a disk (hot-unplugged when the VM runs); its volume is deleted unless keep=true',
    tags: ['vm storage'],
    params: Type.Object({ vm: VmRef.properties.vm, index: Type.Integer({ minimum: 0, maximum: 15 }) }),
    query: Type.Object({ keep: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    reply: responses,
  }),
  snapshots: route({
    method: 'GET',
    path: '/api/v1/vms/:vm/snapshots',
    summary: "List a VM's snapshots",
    tags: ['vm storage'],
    params: VmRef,
    reply: {
      200: Type.Object({
        items: Type.Array(Type.Object({ name: Type.String(), createdAt: Type.String() })),
      }),
      404: ErrorBody,
    },
  }),
  createSnapshot: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/snapshots',
    summary: 'Snapshot every disk of a VM at once (running: filesystems frozen through the guest agent)',
    tags: ['vm storage'],
    params: VmRef,
    body: Type.Object({ name: SnapshotName }, { additionalProperties: false }),
    reply: responses,
  }),
  revertSnapshot: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/snapshots/:name/revert',
    summary: 'Revert a stopped VM to a snapshot',
    tags: ['vm storage'],
    params: SnapshotRef,
    reply: responses,
  }),
  removeSnapshot: route({
    method: 'DELETE',
    path: '/api/v1/vms/:vm/snapshots/:name',
    summary: 'Delete a snapshot',
    tags: ['vm storage'],
    params: SnapshotRef,
    reply: responses,
  }),
};
