/**
 * The one interface through which the agent realizes networks on its host. Two
 * implementations, as for the hypervisor driver: kernel-networks.ts (bridges, VXLAN, nftables,
 * dnsmasq) and recorded-networks.ts (the sim driver's: records only).
 */
import type {
  HostNetworkSpec,
  HostNetworkState,
  NetworkCapabilities,
  PortRules,
} from '../../wire/network.ts';

/** A VM's NIC on a managed network, as the host plugs it. */
export interface PortSpec {
  network: string;
  /** The VM it belongs to (teardown of a VM's ports, and orphan cleanup). */
  vm: string;
  mac: string;
  ip: string | null;
  rules: PortRules | null;
}

export interface HostNetworks {
  capabilities(): Promise<NetworkCapabilities>;
  list(): HostNetworkState[];
  /** Realizes the spec (idempotent) and keeps it; a spec this host cannot realize is kept as failed. */
  apply(spec: HostNetworkSpec): Promise<HostNetworkState>;
  /** Tears the network down; refused while ports are plugged into it. Removing what is not there is done. */
  remove(id: string): Promise<void>;
  /** Re-applies every kept spec and port (agent start). */
  reconcile(): Promise<void>;
  /** Makes a port (a tap on the bridge, its rules applied, up) and answers its interface name. */
  plug(port: PortSpec): Promise<string>;
  /** Rewrites a plugged port's rules. */
  updatePort(tap: string, rules: PortSpec['rules']): Promise<void>;
  /** Removes a port; removing what is not there is done. */
  unplug(tap: string): Promise<void>;
  /** Every port plugged on this host, with its VM. */
  ports(): { tap: string; vm: string; mac: string }[];
  /** The ports of a VM on this host. */
  portsOf(vm: string): string[];
  /** Stops watching; what is realized (dnsmasq included) stays, as VMs do. */
  close(): Promise<void>;
}
