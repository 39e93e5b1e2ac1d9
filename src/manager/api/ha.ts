/** /api/v1/ha: high-availability settings, each VM's restart policy, the plan and the checks. */
import os from 'node:os';
import { TernError } from '../../errors.ts';
import { haRoutes as routes } from '../../wire/api/ha.ts';
import { haPlan } from '../ha/admission.ts';
import { admitProtected } from '../ha/admit-start.ts';
import { haVms } from '../ha/protected.ts';
import { readiness } from '../ha/readiness.ts';
import type { ApiServices, App } from './context.ts';
import { serve } from './serve.ts';

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
  serve(app, routes.status, 'cluster.read', async () => ({ items: await s.ha.statusOfHosts() }));

  serve(app, routes.plan, 'cluster.read', async () => {
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
  });

  serve(app, routes.check, 'cluster.read', async () => {
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
  });

  serve(app, routes.settings, 'cluster.read', async () => s.placer.settings.ha());
  serve(app, routes.updateSettings, 'cluster.write', async (req) => {
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
  });

  serve(app, routes.setVmPolicy, 'vm.admin', async (req) => {
    const row = await s.store.row(req.params.vm);
    const haPolicy = JSON.stringify(req.body);
    // Protecting a VM that runs takes failover room now: strict admission may refuse it.
    if (row.hostId && (row.state === 'running' || row.state === 'paused')) {
      await admitProtected(s, { ...row, haPolicy }, row.hostId);
    }
    return s.store.update(row.id, { haPolicy });
  });
}
