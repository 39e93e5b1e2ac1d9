/**
 * NIC operations on a running simulated VM, answering as the QEMU driver's (qemu/nic-hotplug.ts)
 * do: a NIC on a managed network plugged in at its slot and out (not while the guest hangs),
 * any NIC's link up or down; each done when already done. Only the VM's spec changes.
 */

import { TernError } from '../../errors.ts';
import type { PortRules } from '../../wire/network.ts';
import { type NicSpec, withoutNic } from '../../wire/vm.ts';
import { hotplugSlot } from '../nic-slot.ts';
import type { SimVms } from './vms.ts';

export async function plugNic(sim: SimVms, id: string, nic: NicSpec): Promise<void> {
  const vm = sim.running(id);
  if (vm.spec.nics.some((n) => n.mac === nic.mac)) return;
  const { slot, network: n } = hotplugSlot(vm.spec, nic);
  // Its port, as the QEMU driver plugs one before the device (one left of a killed call is used again).
  if (!sim.networks.ports().some((p) => p.vm === id && p.mac === nic.mac))
    await sim.networks.plug({ network: n.network, vm: id, mac: nic.mac, ip: n.ip, rules: n.rules });
  vm.spec = { ...vm.spec, nics: [...vm.spec.nics, { ...nic, slot }] };
}

export async function unplugNic(sim: SimVms, id: string, mac: string): Promise<void> {
  const vm = sim.running(id);
  const nic = vm.spec.nics.find((n) => n.mac === mac);
  if (!nic) {
    // Gone from the VM already: only its port may be left.
    for (const p of sim.networks.ports()) if (p.vm === id && p.mac === mac) await sim.networks.unplug(p.tap);
    return;
  }
  if (nic.network.mode !== 'network')
    throw new TernError(
      'conflict',
      `NIC ${mac} of ${vm.spec.name} is not on a managed network: it goes while the VM is stopped`,
    );
  if (vm.guestHung || vm.state !== 'running')
    throw new TernError('timeout', `the guest of ${vm.spec.name} did not release NIC ${mac} within 60 s`);
  vm.spec = { ...vm.spec, nics: withoutNic(vm.spec, mac) };
  for (const p of sim.networks.ports()) if (p.vm === id && p.mac === mac) await sim.networks.unplug(p.tap);
}

export async function linkNic(sim: SimVms, id: string, mac: string, link: 'up' | 'down'): Promise<void> {
  const vm = sim.running(id);
  if (!vm.spec.nics.some((n) => n.mac === mac))
    throw new TernError('not_found', `VM ${vm.spec.name} has no NIC ${mac}`);
  vm.spec = {
    ...vm.spec,
    nics: vm.spec.nics.map((n) => {
      if (n.mac !== mac) return n;
      const { link: _, ...rest } = n;
      return link === 'down' ? { ...rest, link } : rest;
    }),
  };
}

/** Rewrites the rules of a running VM's NIC on a managed network: its port's record, if any, and the spec. */
export async function setNicRules(
  sim: SimVms,
  id: string,
  mac: string,
  rules: PortRules | null,
): Promise<void> {
  const vm = sim.running(id);
  const nic = vm.spec.nics.find((n) => n.mac === mac);
  if (!nic) throw new TernError('not_found', `VM ${vm.spec.name} has no NIC ${mac}`);
  if (nic.network.mode !== 'network')
    throw new TernError(
      'conflict',
      `NIC ${mac} of ${vm.spec.name} is not on a managed network: it has no rules`,
    );
  const tap = sim.networks.ports().find((p) => p.vm === id && p.mac === mac)?.tap;
  if (tap) await sim.networks.updatePort(tap, rules);
  vm.spec = {
    ...vm.spec,
    nics: vm.spec.nics.map((n) =>
      n.mac === mac && n.network.mode === 'network' ? { ...n, network: { ...n.network, rules } } : n,
    ),
  };
}
