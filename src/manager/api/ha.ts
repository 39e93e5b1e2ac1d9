/** /api/v1/ha: high-availability settings, each VM's restart policy, the plan and the checks. */
import os from 'node:os';
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody } from '../../wire/common.ts';
import { HaHostStatus, HaSettings, VmHaPolicy } from '../../wire/ha.ts';
import { Vm } from '../../wire/vm.ts';
import { haPlan } from '../ha/admission.ts';
import { admitProtected } from '../ha/admit-start.ts';
import { haVms } from '../ha/protected.ts';
import { readiness } from '../ha/readiness.ts';
import type { ApiServices, App } from './context.ts';

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

/** The inputs of the plan and the checks, from the inventory. */
async function planOf(s: ApiServices) {
  const snapshot = await s.placer.snapshot();
  const rows = await s.db.selectFrom('vms').selectAll().execute();
  const settings = await s.placer.settings.ha();
  const plan = haPlan({
    hosts: snapshot.hosts,
    vms: await haVms(s.db, snapshot, rows),
    failuresToTolerate: settings.failuresToTolerate,
    policy: await s.placer.settings.policy(),
  });
  return { snapshot, rows, settings, plan };
}

export function haRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/ha/status',
    {
      config: { access: 'cluster.read' },
      schema: {
        summary: 'Each host as the HA watch sees it: healthy, isolated, storage-lost, suspect or failed',
        tags: ['ha'],
        response: {
          200: Type.Object({ items: Type.Array(HaHostStatus) }),
        },
      },
    },
    async () => ({ items: await s.ha.statusOfHosts() }),
  );

  app.get(
    '/api/v1/ha/plan',
    {
      config: { access: 'cluster.read' },
      schema: {
        summary: 'How many host failures every protected VM survives now, and where they would restart',
        tags: ['ha'],
        response: { 200: PlanAnswer },
      },
    },
    async () => {
      const { snapshot, rows, plan } = await planOf(s);
      const hostName = (id: string | null) =>
        id ? (snapshot.hosts.find((h) => h.id === id)?.name ?? id) : null;
      return {
        failuresToTolerate: plan.failuresToTolerate,
        tolerates: plan.tolerates,
        ok: plan.ok,
        summary: plan.summary,
        failureSet: plan.failureSet.map((id) => hostName(id) ?? id),
        plan: plan.plan.map((p) => ({
          vm: rows.find((r) => r.id === p.vmId)?.name ?? p.vmId,
          from: hostName(p.fromHostId) ?? p.fromHostId,
          to: hostName(p.hostId),
          ...(p.reason ? { reason: p.reason } : {}),
        })),
      };
    },
  );

  app.get(
    '/api/v1/ha/check',
    {
      config: { access: 'cluster.read' },
      schema: {
        summary: 'Readiness checks: single points of failure and settings that keep HA from working',
        tags: ['ha'],
        response: { 200: Type.Object({ items: Type.Array(Check) }) },
      },
    },
    async () => {
      const { snapshot, settings, plan } = await planOf(s);
      const hosts = await s.hosts.list();
      // On one machine every host has the manager's hostname: the manager runs "on" them.
      const onHost = hosts.find((h) => h.facts?.hostname === os.hostname())?.name ?? null;
      return {
        items: readiness({
          hosts: snapshot.hosts.map((h) => ({
            name: h.name,
            state: h.state,
            pools: h.pools.filter((p) => !p.name.includes('@')),
          })),
          manager: { onHost, standbys: 0 },
          settings,
          toleratesNow: plan.tolerates,
        }),
      };
    },
  );

  app.get(
    '/api/v1/ha/settings',
    {
      config: { access: 'cluster.read' },
      schema: { summary: 'HA settings', tags: ['ha'], response: { 200: HaSettings } },
    },
    async () => s.placer.settings.ha(),
  );
  app.patch(
    '/api/v1/ha/settings',
    {
      config: { access: 'cluster.write' },
      schema: {
        summary: 'Change HA settings; they persist, and switching HA off and on keeps them',
        tags: ['ha'],
        body: Type.Partial(HaSettings, { additionalProperties: false }),
        response: { 200: HaSettings, 400: ErrorBody, 409: ErrorBody },
      },
    },
    async (req) => {
      const next = { ...(await s.placer.settings.ha()), ...req.body };
      if (next.enabled) {
        if (!next.statefilePool) {
          throw new TernError(
            'conflict',
            'HA needs a statefile pool: set statefilePool to a pool every host shares',
            {
              field: 'statefilePool',
            },
          );
        }
        const lacking = (await s.hosts.list()).filter(
          (h) => h.facts && !h.facts.pools.some((p) => p.name === next.statefilePool && p.shared),
        );
        if (lacking.length > 0) {
          throw new TernError(
            'conflict',
            `pool ${next.statefilePool} is not shared by host(s) ${lacking.map((h) => h.name).join(', ')}; the statefile must be on storage every host sees`,
            { field: 'statefilePool' },
          );
        }
      }
      return s.placer.settings.updateHa(req.body);
    },
  );

  app.put(
    '/api/v1/vms/:vm/ha',
    {
      config: { access: 'vm.admin' },
      schema: {
        summary: "Set a VM's HA restart policy",
        tags: ['vms', 'ha'],
        params: Type.Object({ vm: Type.String({ maxLength: 63 }) }),
        body: VmHaPolicy,
        response: { 200: Vm, 404: ErrorBody },
      },
    },
    async (req) => {
      const row = await s.store.row(req.params.vm);
      const haPolicy = JSON.stringify(req.body);
      // Protecting a VM that runs takes failover room now: strict admission may refuse it.
      if (row.hostId && (row.state === 'running' || row.state === 'paused')) {
        await admitProtected(s, { ...row, haPolicy }, row.hostId);
      }
      return s.store.update(row.id, { haPolicy });
    },
  );
}
