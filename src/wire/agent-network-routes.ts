/**
 * The agent routes of virtual networks (src/agent/network/): the manager sends each host the
 * networks it must realize and the host answers what it made of them; a running VM's NICs on
 * them are plugged, unplugged, linked and given their rules. Part of `agentRoutes`.
 */
import { Type } from 'typebox';
import { IdParams, Ok, tags } from './agent-route-parts.ts';
import { Mac, Uuid } from './common.ts';
import { HostNetworkSpec, HostNetworkState, NetworkCapabilities, PortRules } from './network.ts';
import { route } from './route.ts';
import { NicSpec } from './vm.ts';

const NicParams = Type.Object({ id: Uuid, mac: Mac });

export const agentNetworkRoutes = {
  listNetworks: route({
    summary: 'The networks this host realized (or failed to), and what its kernel can do',
    tags,
    method: 'GET',
    path: '/agent/v1/networks',
    reply: {
      200: Type.Object({ networks: Type.Array(HostNetworkState), capabilities: NetworkCapabilities }),
    },
  }),
  putNetwork: route({
    summary: 'Realize a network as the spec says and keep the spec; idempotent',
    tags,
    method: 'PUT',
    path: '/agent/v1/networks/:id',
    params: IdParams,
    body: HostNetworkSpec,
    // 65536 leases of about 80 bytes each.
    bodyLimit: 8 * 1024 * 1024,
    reply: { 200: Type.Object({ network: HostNetworkState }) },
  }),
  deleteNetwork: route({
    summary:
      'Tear a network down; refused while VM NICs on this host use it; removing what is not there is done',
    tags,
    method: 'DELETE',
    path: '/agent/v1/networks/:id',
    params: IdParams,
    reply: { 204: Type.Null() },
  }),
  plugNic: route({
    summary:
      'Hot-plug a NIC (at its slot) into a running VM, its port plugged first; one the VM has already is done',
    tags,
    method: 'POST',
    path: '/agent/v1/vms/:id/nics',
    params: IdParams,
    body: NicSpec,
    reply: { 200: Ok },
  }),
  unplugNic: route({
    summary: 'Hot-unplug a NIC once the guest released it, then its port; one the VM has not is done',
    tags,
    method: 'DELETE',
    path: '/agent/v1/vms/:id/nics/:mac',
    params: NicParams,
    reply: { 204: Type.Null() },
  }),
  linkNic: route({
    summary: "Set a running VM's NIC link up or down (the cable plugged in or pulled)",
    tags,
    method: 'PUT',
    path: '/agent/v1/vms/:id/nics/:mac/link',
    params: NicParams,
    body: Type.Object(
      { link: Type.Union([Type.Literal('up'), Type.Literal('down')]) },
      { additionalProperties: false },
    ),
    reply: { 200: Ok },
  }),
  setNicRules: route({
    summary:
      "Rewrite the security rules of a running VM's NIC on a managed network (its port's chains, in one transaction)",
    tags,
    method: 'PUT',
    path: '/agent/v1/vms/:id/nics/:mac/rules',
    params: NicParams,
    body: Type.Object({ rules: Type.Union([PortRules, Type.Null()]) }, { additionalProperties: false }),
    reply: { 200: Ok },
  }),
};
