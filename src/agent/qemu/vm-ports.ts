/**
 * A VM's ports on managed networks around its QEMU: plugged (a tap of the agent's, on the
 * bridge, its rules applied, up) before QEMU starts and opens them, unplugged once QEMU ended.
 * While QEMU runs they stay, also across an agent restart (the network store keeps them).
 */
import type { Logger } from '../../log.ts';
import { nicSlot, type VmSpec } from '../../wire/vm.ts';
import type { HostNetworks } from '../network/host-networks.ts';
import { nicNodes } from './command-line.ts';
import { type Monitor, setLink } from './qmp-commands.ts';

/**
 * Plugs a port for every NIC of `spec` on a managed network; answers the taps by NIC index
 * (null for the others). A port that cannot be plugged unplugs the ones before it.
 */
export async function plugPorts(networks: HostNetworks, spec: VmSpec): Promise<(string | null)[]> {
  const taps: (string | null)[] = [];
  try {
    for (const nic of spec.nics) {
      const n = nic.network;
      taps.push(
        n.mode === 'network'
          ? await networks.plug({ network: n.network, vm: spec.id, mac: nic.mac, ip: n.ip, rules: n.rules })
          : null,
      );
    }
  } catch (err) {
    await unplugPorts(networks, taps);
    throw err;
  }
  return taps;
}

/** Unplugs the given ports; one that is gone already is done. */
export async function unplugPorts(networks: HostNetworks, taps: readonly (string | null)[]): Promise<void> {
  for (const tap of taps) if (tap) await networks.unplug(tap);
}

/**
 * Unplugs every port of VM `vm`: to be called only when no QEMU of it runs on this host (it
 * ended, or is about to be started afresh), never while one may still use them.
 */
export async function unplugVm(networks: HostNetworks, vm: string, log: Logger): Promise<void> {
  await unplugPorts(networks, networks.portsOf(vm)).catch((err) =>
    log.error({ vm, err }, "removing the ports of a VM whose QEMU ended failed; the agent's start retries"),
  );
}

/**
 * Sets down the links the spec says are down. QEMU has no command-line option for a NIC's
 * link, so this runs right after the monitor answers: before the guest's kernel has probed
 * its NICs, and for a migration's target before the guest runs at all.
 */
export async function applyLinks(m: Monitor, spec: VmSpec): Promise<void> {
  for (const [i, nic] of spec.nics.entries()) {
    if (nic.link === 'down') await setLink(m, nicNodes(nicSlot(nic, i)).device, false);
  }
}
