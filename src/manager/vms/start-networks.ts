/**
 * Before a stopped VM with NICs on managed networks starts: each port's rules as its security
 * group says now (a group changed since the VM last ran takes effect at this start), and the
 * hosts' networks brought up to date, so placement sees where its networks are ready and its
 * host's DHCP knows its MAC before the guest asks.
 */
import type { NicSpec } from '../../wire/vm.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { NetworkSync } from '../networks/host-sync.ts';
import { networksOf } from '../networks/nics.ts';
import { portRules } from '../networks/port-rules.ts';
import { groupToWire, type SecurityGroupStore } from '../networks/security-groups.ts';
import type { VmDeps } from './deps.ts';

export interface StartNetworkDeps extends VmDeps {
  securityGroups: SecurityGroupStore;
  networkSync: NetworkSync;
}

export async function prepareNetworks(d: StartNetworkDeps, vmId: string): Promise<void> {
  const spec = vmSpecOf(await d.store.row(vmId));
  if (networksOf(spec).length === 0) return;
  const groupOf = new Map(
    (await d.db.selectFrom('nics').select(['mac', 'securityGroup']).where('vmId', '=', vmId).execute()).map(
      (n) => [n.mac, n.securityGroup],
    ),
  );
  const members = await d.securityGroups.members();
  const nics: NicSpec[] = [];
  for (const nic of spec.nics) {
    const group = groupOf.get(nic.mac);
    if (nic.network.mode !== 'network') nics.push(nic);
    else {
      const rules = group ? portRules(groupToWire(await d.securityGroups.row(group)), members) : null;
      nics.push({ ...nic, network: { ...nic.network, rules } });
    }
  }
  if (JSON.stringify(nics) !== JSON.stringify(spec.nics))
    await d.store.update(vmId, { spec: JSON.stringify({ ...spec, nics }) });
  await d.networkSync.settled();
}
