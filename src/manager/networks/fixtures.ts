/**
 * Inventory rows and a host's agent for the tests and benchmarks of networks: a host, a VM and a
 * NIC with plain defaults, and an agent that keeps what it is given, as the sim driver's networks
 * do. (Tests and bench only; kept here so the rows' defaults live in one place.)
 */
import type { HostNetworkSpec, HostNetworkState } from '../../wire/network.ts';
import type { Db } from '../db/database.ts';
import type { NetworkAgent } from './host-sync.ts';

/** A host's agent that keeps the networks it is given; `refuse` fails a network by name. */
export class KeepingAgent implements NetworkAgent {
  readonly held = new Map<string, HostNetworkSpec>();
  /** `put NAME` and `delete NAME`, in order. */
  readonly calls: string[] = [];
  refuse: string | null = null;
  async listNetworks(): Promise<HostNetworkState[]> {
    return [...this.held.values()].map(readyState);
  }
  async putNetwork(spec: HostNetworkSpec): Promise<HostNetworkState> {
    this.calls.push(`put ${spec.name}`);
    if (spec.name === this.refuse) throw new Error('bridge name taken by another interface');
    this.held.set(spec.id, spec);
    return readyState(spec);
  }
  async deleteNetwork(id: string): Promise<void> {
    this.calls.push(`delete ${this.held.get(id)?.name ?? id}`);
    this.held.delete(id);
  }
}

const readyState = (s: HostNetworkSpec): HostNetworkState => ({
  id: s.id,
  name: s.name,
  bridge: s.bridge,
  state: 'ready',
  reason: null,
  dhcp: s.dhcp || s.leases.length ? 'running' : 'none',
  ports: 0,
});

/** An online host at `address` (its agent's URL); its id is made from its name unless given. */
export async function insertHost(
  db: Db,
  name: string,
  address: string,
  id = `00000000-0000-4000-8000-${name.padStart(12, '0')}`,
): Promise<string> {
  await db
    .insertInto('hosts')
    .values({
      id,
      name,
      address,
      state: 'online',
      lastSeen: null,
      facts: null,
      createdAt: 't',
      certFingerprint: null,
      certSerial: null,
      certExpiresAt: null,
      joinedAt: null,
      haSlot: null,
      haAcknowledged: null,
    })
    .execute();
  return id;
}

/** A stopped VM on no host, with an empty spec: enough to own NICs. */
export async function insertVm(db: Db, id: string, name: string): Promise<string> {
  await db
    .insertInto('vms')
    .values({
      id,
      name,
      hostId: null,
      state: 'stopped',
      stateReason: null,
      template: null,
      image: null,
      clone: null,
      clientMachineId: null,
      imagePool: null,
      poolVersion: null,
      cpuMode: 'compat',
      haPolicy: null,
      haRestartFrom: null,
      replicaOf: null,
      spec: '{}',
      diskSizes: '[]',
      guest: '{}',
      vncPort: null,
      ownerId: null,
      project: null,
      createdAt: 't',
      updatedAt: 't',
    })
    .execute();
  return id;
}

/** A NIC of `vmId` on a network, with its address, in no security group. */
export async function insertNic(
  db: Db,
  nic: { mac: string; vmId: string; networkId: string; ip: string },
): Promise<void> {
  await db
    .insertInto('nics')
    .values({ ...nic, securityGroup: null, createdAt: 't' })
    .execute();
}
