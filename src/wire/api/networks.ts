/** /api/v1/networks: managed networks (bridge, nat, isolated, overlay) and where they stand. */
import { Type } from 'typebox';
import { ErrorBody, Name } from '../common.ts';
import { CreateNetworkRequest, HostNetworkState, Network } from '../network.ts';
import { route } from '../route.ts';

const NetworkRef = Type.Object({ network: Name });
const errors = { 400: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody };

export const NetworkHosts = Type.Object({
  items: Type.Array(Type.Object({ host: Name, state: Type.Union([HostNetworkState, Type.Null()]) })),
});

export const networkRoutes = {
  list: route({
    method: 'GET',
    path: '/api/v1/networks',
    summary: 'Managed networks',
    tags: ['networks'],
    reply: { 200: Type.Object({ items: Type.Array(Network) }), ...errors },
  }),
  create: route({
    method: 'POST',
    path: '/api/v1/networks',
    summary: 'Make a network; every host is given it',
    tags: ['networks'],
    body: CreateNetworkRequest,
    reply: { 201: Network, ...errors },
  }),
  show: route({
    method: 'GET',
    path: '/api/v1/networks/:network',
    summary: 'Show a network',
    tags: ['networks'],
    params: NetworkRef,
    reply: { 200: Network, ...errors },
  }),
  hosts: route({
    method: 'GET',
    path: '/api/v1/networks/:network/hosts',
    summary: 'What each host made of a network (null: it has not said)',
    tags: ['networks'],
    params: NetworkRef,
    reply: { 200: NetworkHosts, ...errors },
  }),
  remove: route({
    method: 'DELETE',
    path: '/api/v1/networks/:network',
    summary: 'Delete a network no NIC uses; every host tears it down',
    tags: ['networks'],
    params: NetworkRef,
    reply: { 204: Type.Null(), ...errors },
  }),
};
