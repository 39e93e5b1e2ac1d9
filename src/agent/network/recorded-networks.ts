/**
 * The sim driver's networks: the same checks and answers as kernel-networks.ts, recorded only
 * (no kernel changes), so scale tests of the manager can use networks on thousands of hosts.
 */
import { randomBytes } from 'node:crypto';
import { TernError } from '../../errors.ts';
import type { HostNetworkSpec, HostNetworkState, NetworkCapabilities } from '../../wire/network.ts';
import type { HostNetworks, PortSpec } from './host-networks.ts';
import { specProblem } from './spec-checks.ts';

export class RecordedNetworks implements HostNetworks {
  readonly #nets = new Map<string, { spec: HostNetworkSpec; ports: Map<string, PortSpec> }>();

  async capabilities(): Promise<NetworkCapabilities> {
    return { vlan: true, vxlan: true, nftables: true, dnsmasq: true, reasons: [] };
  }

  list(): HostNetworkState[] {
    return [...this.#nets.values()].map(({ spec, ports }) => ({
      id: spec.id,
      name: spec.name,
      bridge: spec.bridge,
      state: 'ready',
      reason: null,
      dhcp: spec.gateway && (spec.dhcp || spec.leases.length > 0) ? 'running' : 'none',
      ports: ports.size,
    }));
  }

  async apply(spec: HostNetworkSpec): Promise<HostNetworkState> {
    const problem = specProblem(
      spec,
      [...this.#nets.values()].map((n) => n.spec),
    );
    if (problem) throw new TernError('invalid_request', `network ${spec.name}: ${problem}`);
    this.#nets.set(spec.id, { spec, ports: this.#nets.get(spec.id)?.ports ?? new Map() });
    return this.list().find((n) => n.id === spec.id)!;
  }

  async remove(id: string): Promise<void> {
    const n = this.#nets.get(id);
    if (n && n.ports.size > 0)
      throw new TernError('conflict', `network ${n.spec.name} has ${n.ports.size} VM NICs on this host`);
    this.#nets.delete(id);
  }

  async reconcile(): Promise<void> {}

  async plug(port: PortSpec): Promise<string> {
    const n = this.#nets.get(port.network);
    if (!n) throw new TernError('conflict', `network ${port.network} is not realized on this host`);
    const tap = `tt${randomBytes(6).toString('hex')}`;
    n.ports.set(tap, port);
    return tap;
  }

  async updatePort(tap: string, rules: PortSpec['rules']): Promise<void> {
    const n = [...this.#nets.values()].find((x) => x.ports.has(tap));
    if (!n) throw new TernError('not_found', `no port ${tap} on this host`);
    n.ports.set(tap, { ...n.ports.get(tap)!, rules });
  }

  async unplug(tap: string): Promise<void> {
    for (const n of this.#nets.values()) n.ports.delete(tap);
  }

  ports(): { tap: string; vm: string; mac: string }[] {
    return [...this.#nets.values()].flatMap((n) =>
      [...n.ports].map(([tap, p]) => ({ tap, vm: p.vm, mac: p.mac })),
    );
  }

  portsOf(vm: string): string[] {
    return [...this.#nets.values()].flatMap((n) =>
      [...n.ports].filter(([, p]) => p.vm === vm).map(([t]) => t),
    );
  }

  async close(): Promise<void> {}
}
