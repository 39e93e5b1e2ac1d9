/** /api/v1/vms/{vm}/nics: a VM's network cards, each change a task. */
import { TernError } from '../../errors.ts';
import { vmNicRoutes as routes } from '../../wire/api/vm-nics.ts';
import { principalOf, seesAllVms } from '../auth/principal.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { maxNics } from '../vms/nics.ts';
import type { ApiServices, App } from './context.ts';
import { acceptVmTask } from './reply.ts';
import { serve } from './serve.ts';

export function vmNicRoutes(app: App, s: ApiServices): void {
  serve(app, routes.addNic, 'vm.write', async (req, reply) => {
    const nic = req.body;
    if (nic.mode === 'bridge' && !seesAllVms(principalOf(req)))
      throw new TernError(
        'forbidden',
        'bridged networks (a host bridge) are operator work; use a managed network',
      );
    const row = await s.store.row(req.params.vm);
    if (vmSpecOf(row).nics.length >= maxNics)
      throw new TernError('conflict', `VM ${row.name} has ${maxNics} NICs, the most it may have`);
    // Refused here rather than in the task: a network or group that does not exist.
    if (nic.mode === 'network') {
      const network = await s.networks.row(nic.network);
      if (nic.group) await s.securityGroups.row(nic.group);
      // An address asked for is checked now (the task takes it, or the next free one, when it runs).
      if (nic.ip)
        s.networks.release([
          { mac: '', networkId: network.id, ip: await s.networks.address(network, nic.ip) },
        ]);
    }
    const mac =
      nic.mode === 'network' && nic.mac ? await s.networks.requestedMac(nic.mac) : await s.networks.freeMac();
    try {
      return await acceptVmTask(s, reply, req.params.vm, s.kinds.nicAdd, (vmId) => ({
        vmId,
        mac,
        request: nic,
      }));
    } finally {
      s.networks.release([{ mac, networkId: null, ip: null }]);
    }
  });

  serve(app, routes.removeNic, 'vm.write', async (req, reply) =>
    acceptVmTask(s, reply, req.params.vm, s.kinds.nicRemove, (vmId) => ({ vmId, mac: req.params.mac })),
  );

  serve(app, routes.linkNic, 'vm.write', async (req, reply) =>
    acceptVmTask(s, reply, req.params.vm, s.kinds.nicLink, (vmId) => ({
      vmId,
      mac: req.params.mac,
      link: req.body.link,
    })),
  );
}
