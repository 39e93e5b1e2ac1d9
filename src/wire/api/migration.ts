/** Moving VMs: live and quick migration between hosts, disks between pools. */
import { Type } from 'typebox';
import { MigrateVmRequest, MigrationPreview, MoveDiskRequest } from '../cluster.ts';
import { ErrorBody } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { VmRef } from './vms.ts';

export const migrationRoutes = {
  migrate: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/migrate',
    summary: 'Move a running VM to another host (placement picks it unless `to` is given)',
    tags: ['vms'],
    params: VmRef,
    body: MigrateVmRequest,
    reply: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody },
  }),
  migratePreview: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/migrate/preview',
    summary: 'Where a migration would go and why: every host with its rating or the filter that rejected it',
    tags: ['vms'],
    params: VmRef,
    body: MigrateVmRequest,
    reply: { 200: MigrationPreview, 404: ErrorBody, 409: ErrorBody },
  }),
  moveDisk: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/disks/:index/move',
    summary: 'Move a disk to another storage pool of its host (live when the VM runs)',
    tags: ['vms'],
    params: Type.Object({
      vm: VmRef.properties.vm,
      index: Type.Integer({ minimum: 0, maximum: 15 }),
    }),
    body: MoveDiskRequest,
    reply: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
  }),
};
