/** /api/v1/hosts: the hosts the manager drives, how they join and leave, their orphans and maintenance. */
import { Type } from 'typebox';
import { MaintenanceRequest } from '../cluster.ts';
import { ErrorBody, Uuid } from '../common.ts';
import { AddHostRequest, Host, JoinToken } from '../host.ts';
import { Orphan, OrphanAdopted } from '../orphan.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

const HostParams = Type.Object({ host: Type.String({ maxLength: 63 }) });
// Orphans: what a host holds for VMs the inventory does not know (docs/storage.md).
const OrphanParams = Type.Object({ host: HostParams.properties.host, id: Uuid });

export const hostRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/hosts',
    summary: 'List hosts',
    tags: ['hosts'],
    reply: { 200: Type.Object({ items: Type.Array(Host) }) },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/hosts/:host',
    summary: 'Show a host',
    tags: ['hosts'],
    params: HostParams,
    reply: { 200: Host, 404: ErrorBody },
  }),
  add: route({
    method: 'POST',
    path: '/api/v1/hosts',
    summary: 'Add a host: make a single-use join token for its agent (valid one hour)',
    tags: ['hosts'],
    body: AddHostRequest,
    reply: { 201: JoinToken, 409: ErrorBody },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/hosts/:host',
    summary: 'Remove a host and revoke its certificate; it must have no VMs',
    tags: ['hosts'],
    params: HostParams,
    reply: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
  }),
  orphans: route({
    method: 'GET',
    path: '/api/v1/hosts/:host/orphans',
    summary: 'List what the host holds for VMs the inventory does not know: QEMU processes and VM volumes',
    tags: ['hosts'],
    params: HostParams,
    reply: { 200: Type.Object({ items: Type.Array(Orphan) }), 404: ErrorBody },
  }),
  adoptOrphan: route({
    method: 'POST',
    path: '/api/v1/hosts/:host/orphans/:id/adopt',
    summary: 'Adopt an orphan: a running one becomes a VM again, any other keeps its disks as kept volumes',
    tags: ['hosts'],
    params: OrphanParams,
    reply: { 200: OrphanAdopted, 404: ErrorBody, 409: ErrorBody },
  }),
  removeOrphan: route({
    method: 'DELETE',
    path: '/api/v1/hosts/:host/orphans/:id',
    summary: 'Remove an orphan: its files, and its QEMU (a running one only with force=true)',
    tags: ['hosts'],
    params: OrphanParams,
    query: Type.Object({ force: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
    reply: { 204: Type.Null(), 404: ErrorBody, 409: ErrorBody },
  }),
  enterMaintenance: route({
    method: 'POST',
    path: '/api/v1/hosts/:host/maintenance',
    summary: 'Enter maintenance: live-migrate every running VM away, then take no new VMs',
    tags: ['hosts'],
    params: HostParams,
    body: MaintenanceRequest,
    reply: { 202: TaskAccepted, 404: ErrorBody, 409: ErrorBody },
  }),
  leaveMaintenance: route({
    method: 'DELETE',
    path: '/api/v1/hosts/:host/maintenance',
    summary: 'Leave maintenance: the host takes VMs again',
    tags: ['hosts'],
    params: HostParams,
    reply: { 200: Host, 404: ErrorBody, 409: ErrorBody },
  }),
};
