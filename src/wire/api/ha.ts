/** /api/v1/ha: high-availability settings, each VM's restart policy, the plan and the checks. */
import { Type } from 'typebox';
import { ErrorBody } from '../common.ts';
import { HaHostStatus, HaSettings, VmHaPolicy } from '../ha.ts';
import { route } from '../route.ts';
import { Vm } from '../vm.ts';
import { VmRef } from './vms.ts';

const Check = Type.Object({
  check: Type.String(),
  level: Type.Union([Type.Literal('ok'), Type.Literal('warning'), Type.Literal('error')]),
  message: Type.String(),
  fix: Type.Union([Type.String(), Type.Null()]),
});
const PlanAnswer = Type.Object({
  failuresToTolerate: Type.Integer(),
  tolerates: Type.Integer(),
  ok: Type.Boolean(),
  summary: Type.String(),
  failureSet: Type.Array(Type.String()),
  plan: Type.Array(
    Type.Object({
      vm: Type.String(),
      from: Type.String(),
      to: Type.Union([Type.String(), Type.Null()]),
      reason: Type.Optional(Type.String()),
    }),
  ),
});

export const haRoutes = {
  status: route({
    method: 'GET',
    path: '/api/v1/ha/status',
    summary: 'Each host as the HA watch sees it: healthy, isolated, storage-lost, suspect or failed',
    tags: ['ha'],
    reply: {
      200: Type.Object({ items: Type.Array(HaHostStatus) }),
    },
  }),
  plan: route({
    method: 'GET',
    path: '/api/v1/ha/plan',
    summary: 'How many host failures every protected VM survives now, and where they would restart',
    tags: ['ha'],
    reply: { 200: PlanAnswer },
  }),
  check: route({
    method: 'GET',
    path: '/api/v1/ha/check',
    summary: 'Readiness checks: single points of failure and settings that keep HA from working',
    tags: ['ha'],
    reply: { 200: Type.Object({ items: Type.Array(Check) }) },
  }),
  settings: route({
    method: 'GET',
    path: '/api/v1/ha/settings',
    summary: 'HA settings',
    tags: ['ha'],
    reply: { 200: HaSettings },
  }),
  updateSettings: route({
    method: 'PATCH',
    path: '/api/v1/ha/settings',
    summary: 'Change HA settings; they persist, and switching HA off and on keeps them',
    tags: ['ha'],
    body: Type.Partial(HaSettings, { additionalProperties: false }),
    reply: { 200: HaSettings, 400: ErrorBody, 409: ErrorBody },
  }),
  setVmPolicy: route({
    method: 'PUT',
    path: '/api/v1/vms/:vm/ha',
    summary: "Set a VM's HA restart policy",
    tags: ['vms', 'ha'],
    params: VmRef,
    body: VmHaPolicy,
    reply: { 200: Vm, 404: ErrorBody },
  }),
};
