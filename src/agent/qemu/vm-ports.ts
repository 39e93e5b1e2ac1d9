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
 * (null for the others). Asked all at once, so the host plugs them together; if one cannot be
 * plugged, the others are unplugged.
 */
export async function plugPorts(networks: HostNetworks, spec: VmSpec): Promise<(string | null)[]> {
  const asked = await Promise.allSettled(
    spec.nics.map(({ network: n, mac }) =>
      n.mode === 'network'
        ? networks.plug({ network: n.network, vm: spec.id, mac, ip: n.ip, rules: n.rules })
        : Promise.resolve(null),
    ),
  );
  const failed = asked.find((a) => a.status === 'rejected');
  if (failed) {
    await unplugPorts(
      networks,
      asked.map((a) => (a.status === 'fulfilled' ? a.value : null)),
    );
    throw failed.reason;
  }
  return asked.map((a) => (a as PromiseFulfilledResult<string | null>).value);
}

/** Unplugs the given ports (asked at once: the host removes them together); one gone already is done. */
export async function unplugPorts(networks: HostNetworks, taps: readonly (string | null)[]): Promise<void> {
  const asked = await Promise.allSettled(taps.map((tap) => (tap ? networks.unplug(tap) : undefined)));
  const failed = asked.find((a) => a.status === 'rejected');
  if (failed) throw failed.reason;
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
