/**
 * NICs of a running VM: one on a managed network plugged in (its port first, then QEMU's tap
 * backend on it, then the device at its slot) and out (the device once the guest released it,
 * then the backend, then the port), each step undone again if a later one fails; and any NIC's
 * link set up or down. Each is done when already done, so a retried or resumed call is safe.
 * The running spec records the change, for a later agent and a migration's target.
 */

import { TernError } from '../../errors.ts';
import type { PortRules } from '../../wire/network.ts';
import { type NicSpec, nicSlot, withoutNic } from '../../wire/vm.ts';
import type { HostNetworks } from '../network/host-networks.ts';
import { hotplugSlot } from '../nic-slot.ts';
import { nicDevice, nicNodes } from './command-line.ts';
import {
  deviceAdd,
  deviceDel,
  deviceIds,
  netdevAddTap,
  netdevDel,
  qmpEvents,
  setLink,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

/** Hot-plugs a NIC on a managed network into a running VM, at its slot (the lowest free one when absent). */
export async function plugNicRunning(vm: VmProcess, nic: NicSpec, networks: HostNetworks): Promise<void> {
  if (vm.spec.nics.some((n) => n.mac === nic.mac)) return;
  const { slot, network: n } = hotplugSlot(vm.spec, nic);
  const ids = nicNodes(slot);
  // An agent killed midway left the port (kept), perhaps the backend and the device too.
  const left = portOf(networks, vm.id, nic.mac);
  const tap =
    left ?? (await networks.plug({ network: n.network, vm: vm.id, mac: nic.mac, ip: n.ip, rules: n.rules }));
  try {
    if (!(await deviceIds(vm.monitor)).includes(ids.device)) {
      // No device uses a backend of that id: one left without its device goes first.
      await netdevDel(vm.monitor, ids.netdev).catch(() => {});
      await netdevAddTap(vm.monitor, ids.netdev, tap);
      try {
        await deviceAdd(vm.monitor, nicDevice(nic, slot, vm.spec.machine === 'q35'));
      } catch (err) {
        await netdevDel(vm.monitor, ids.netdev).catch(() => {});
        throw err;
      }
    }
    await setLink(vm.monitor, ids.device, nic.link !== 'down');
  } catch (err) {
    if (!(await deviceIds(vm.monitor).catch(() => [ids.device])).includes(ids.device))
      await networks.unplug(tap);
    throw err;
  }
  vm.updateSpec({ ...vm.spec, nics: [...vm.spec.nics, { ...nic, slot }] });
}

/** Unplugs a NIC on a managed network from a running VM once the guest released it, then its port. */
export async function unplugNicRunning(vm: VmProcess, mac: string, networks: HostNetworks): Promise<void> {
  const index = vm.spec.nics.findIndex((n) => n.mac === mac);
  if (index < 0) {
    // Gone from QEMU already (a retry after the spec was written): only its port may be left.
    const tap = portOf(networks, vm.id, mac);
    if (tap) await networks.unplug(tap);
    return;
  }
  const nic = vm.spec.nics[index];
  if (nic.network.mode !== 'network')
    throw new TernError(
      'conflict',
      `NIC ${mac} of ${vm.spec.name} is not on a managed network: it goes while the VM is stopped`,
    );
  const ids = nicNodes(nicSlot(nic, index));
  // An agent killed midway may have seen the guest release it already.
  if ((await deviceIds(vm.monitor)).includes(ids.device)) {
    const deleted = vm.event(qmpEvents.deviceDeleted, 60_000, (d) => d.device === ids.device);
    deleted.catch(() => {});
    await deviceDel(vm.monitor, ids.device);
    try {
      await deleted;
    } catch {
      throw new TernError('timeout', `the guest of ${vm.spec.name} did not release NIC ${mac} within 60 s`);
    }
  }
  await netdevDel(vm.monitor, ids.netdev).catch(() => {});
  // The other NICs keep their slots: QEMU names their devices after them.
  vm.updateSpec({ ...vm.spec, nics: withoutNic(vm.spec, mac) });
  const tap = portOf(networks, vm.id, mac);
  if (tap) await networks.unplug(tap);
}

/** The port of NIC `mac` of VM `vm` on this host, if it has one. */
function portOf(networks: HostNetworks, vm: string, mac: string): string | undefined {
  return networks.ports().find((p) => p.vm === vm && p.mac === mac)?.tap;
}

/** Sets a running VM's NIC link up or down, as the guest sees it. */
export async function linkNicRunning(vm: VmProcess, mac: string, link: 'up' | 'down'): Promise<void> {
  const index = vm.spec.nics.findIndex((n) => n.mac === mac);
  if (index < 0) throw new TernError('not_found', `VM ${vm.spec.name} has no NIC ${mac}`);
  await setLink(vm.monitor, nicNodes(nicSlot(vm.spec.nics[index], index)).device, link === 'up');
  const nics = vm.spec.nics.map((n, i) => {
    if (i !== index) return n;
    const { link: _, ...rest } = n;
    return link === 'down' ? { ...rest, link } : rest;
  });
  vm.updateSpec({ ...vm.spec, nics });
}

/**
 * Rewrites the rules of a running VM's NIC on a managed network: its port's chains (one nft
 * transaction), then the running spec. Setting the rules it has already is done.
 */
export async function setNicRulesRunning(
  vm: VmProcess,
  mac: string,
  rules: PortRules | null,
  networks: HostNetworks,
): Promise<void> {
  const nic = vm.spec.nics.find((n) => n.mac === mac);
  if (!nic) throw new TernError('not_found', `VM ${vm.spec.name} has no NIC ${mac}`);
  if (nic.network.mode !== 'network')
    throw new TernError(
      'conflict',
      `NIC ${mac} of ${vm.spec.name} is not on a managed network: it has no rules`,
    );
  const tap = portOf(networks, vm.id, mac);
  if (!tap) throw new TernError('conflict', `NIC ${mac} of ${vm.spec.name} has no port on this host`);
  await networks.updatePort(tap, rules);
  vm.updateSpec({
    ...vm.spec,
    nics: vm.spec.nics.map((n) =>
      n.mac === mac && n.network.mode === 'network' ? { ...n, network: { ...n.network, rules } } : n,
    ),
  });
}
