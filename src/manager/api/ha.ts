/** /api/v1/ha: high-availability settings, each VM's restart policy, the plan and the checks. */
import { Type } from 'typebox';
import { TernError } from '../../errors.ts';
import { ErrorBody } from '../../wire/common.ts';
import { HaSettings, VmHaPolicy } from '../../wire/ha.ts';
import { Vm } from '../../wire/vm.ts';
import type { ApiServices, App } from './context.ts';

export function haRoutes(app: App, s: ApiServices): void {
  app.get(
    '/api/v1/ha/settings',
    { schema: { summary: 'HA settings', tags: ['ha'], response: { 200: HaSettings } } },
    async () => s.placer.settings.ha(),
  );
  app.patch(
    '/api/v1/ha/settings',
    {
      schema: {
        summary: 'Change HA settings; they persist, and switching HA off and on keeps them',
        tags: ['ha'],
        body: Type.Partial(HaSettings),
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
      schema: {
        summary: "Set a VM's HA restart policy",
        tags: ['vms', 'ha'],
        params: Type.Object({ vm: Type.String({ maxLength: 63 }) }),
        body: VmHaPolicy,
        response: { 200: Vm, 404: ErrorBody },
      },
    },
    async (req) => {
      const vm = await s.store.get(req.params.vm);
      return s.store.update(vm.id, { haPolicy: JSON.stringify(req.body) });
    },
  );
}
