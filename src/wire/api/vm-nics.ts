/** /api/v1/vms/{vm}/nics: a VM's network cards, added, removed, their link up or down. */
import { Type } from 'typebox';
import { VmRef } from '../api/vms.ts';
import { ErrorBody, Mac } from '../common.ts';
import { route } from '../route.ts';
import { TaskAccepted } from '../task.ts';
import { NicRequest } from '../vm.ts';

const responses = { 202: TaskAccepted, 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };
const NicRef = Type.Object({ vm: VmRef.properties.vm, mac: Mac });

export const vmNicRoutes = {
  addNic: route({
    method: 'POST',
    path: '/api/v1/vms/:vm/nics',
    summary: 'Add a network card: on a managed network it gets an address and a fixed lease',
    tags: ['vm networks'],
    params: VmRef,
    body: NicRequest,
    reply: responses,
  }),
  removeNic: route({
    method: 'DELETE',
    path: '/api/v1/vms/:vm/nics/:mac',
    summary: 'Remove a network card; its address and lease are freed',
    tags: ['vm networks'],
    params: NicRef,
    reply: responses,
  }),
  linkNic: route({
    method: 'PUT',
    path: '/api/v1/vms/:vm/nics/:mac/link',
    summary: "Set a network card's link up or down (the cable plugged in or pulled)",
    tags: ['vm networks'],
    params: NicRef,
    body: Type.Object(
      { link: Type.Union([Type.Literal('up'), Type.Literal('down')]) },
      { additionalProperties: false },
    ),
    reply: responses,
  }),
};
