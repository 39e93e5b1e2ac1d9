/** /api/v1/vms/{vm}/cdrom: a library ISO into a VM's CD-ROM drive, or out of it. */
import { Type } from 'typebox';
import { VmRef } from '../api/vms.ts';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const Force = Type.Boolean({ description: 'open the tray even if the guest has locked it (a mounted disc)' });

export const vmCdromRoutes = {
  insert: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/cdrom',
    summary: "Insert a library ISO into a VM's CD-ROM (a stopped VM without a drive gets one)",
    tags: ['vm storage'],
    params: VmRef,
    body: Type.Object({ image: Name, force: Type.Optional(Force) }, { additionalProperties: false }),
    reply: responses,
  }),
  eject: route({
    method: 'DELETE',
    path: '/api/v1/vms/:vm/cdrom',
    summary: "Eject the medium from a VM's CD-ROM",
    tags: ['vm storage'],
    params: VmRef,
    query: Type.Object({ force: Type.Optional(Force) }, { additionalProperties: false }),
    reply: responses,
  }),
};
