/** /api/v1/cluster: the cluster as a whole — its CPU baseline, settings, capacity, placement. */
import { Type } from 'typebox';
import {
  CapacityAnswer,
  CapacityRequest,
  ClusterInfo,
  ClusterSettings,
  CreatePlacementGroup,
  PlacementExplanation,
  PlacementGroup,
} from '../cluster.ts';
import { ErrorBody, Name } from '../common.ts';
import { route } from '../route.ts';
import { Firmware } from '../vm.ts';

const PlacementRequest = Type.Object(
  {
    vcpus: Type.Integer({ minimum: 1, maximum: 256 }),
    memoryMiB: Type.Integer({ minimum: 32, maximum: 4 * 1024 * 1024 }),
    diskBytes: Type.Optional(Type.Integer({ minimum: 0 })),
    template: Type.Optional(Name),
    image: Type.Optional(Name),
    iso: Type.Optional(Name),
    firmware: Type.Optional(Firmware),
    pool: Type.Optional(Name),
    cpuMode: Type.Optional(Type.Union([Type.Literal('compat'), Type.Literal('host')])),
    groups: Type.Optional(Type.Array(Name, { maxItems: 16 })),
    networks: Type.Optional(
      Type.Array(Name, {
        maxItems: 8,
        description: 'managed networks its NICs are on: only hosts that have them',
      }),
    ),
  },
  { additionalProperties: false },
);

export const clusterRoutes = {
  show: route({
    method: 'GET',
    path: '/api/v1/cluster',
    summary: 'The cluster: hosts by state, CPU baseline, capacity',
    tags: ['cluster'],
    reply: { 200: ClusterInfo },
  }),
  settings: route({
    method: 'GET',
    path: '/api/v1/cluster/settings',
    summary: 'Placement and migration settings',
    tags: ['cluster'],
    reply: { 200: ClusterSettings },
  }),
  updateSettings: route({
    method: 'PATCH',
    path: '/api/v1/cluster/settings',
    summary: 'Change placement and migration settings (kept across restarts)',
    tags: ['cluster'],
    body: Type.Partial(ClusterSettings, { additionalProperties: false }),
    reply: { 200: ClusterSettings, 400: ErrorBody },
  }),
  capacity: route({
    method: 'POST',
    path: '/api/v1/cluster/capacity',
    summary:
      'How many more VMs of a size fit while every protected VM could restart after `tolerate` host failures',
    tags: ['cluster'],
    body: CapacityRequest,
    reply: { 200: CapacityAnswer, 400: ErrorBody },
  }),
  placement: route({
    method: 'POST',
    path: '/api/v1/cluster/placement',
    summary: 'Where a new VM would go, and why each host was chosen or rejected',
    tags: ['cluster'],
    body: PlacementRequest,
    reply: { 200: PlacementExplanation, 404: ErrorBody },
  }),
  placementGroups: route({
    method: 'GET',
    path: '/api/v1/placement-groups',
    summary: 'Affinity and anti-affinity groups',
    tags: ['cluster'],
    reply: { 200: Type.Object({ items: Type.Array(PlacementGroup) }) },
  }),
  createPlacementGroup: route({
    method: 'POST',
    path: '/api/v1/placement-groups',
    summary: 'Create a placement group; VMs join it when created with `groups`',
    tags: ['cluster'],
    body: CreatePlacementGroup,
    reply: { 201: PlacementGroup, 409: ErrorBody },
  }),
  removePlacementGroup: route({
    method: 'DELETE',
    path: '/api/v1/placement-groups/:name',
    summary: 'Delete a placement group (its VMs stay where they are)',
    tags: ['cluster'],
    params: Type.Object({ name: Name }),
    reply: { 204: Type.Null(), 404: ErrorBody },
  }),
};
