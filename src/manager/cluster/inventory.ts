/**
 * The cluster as placement sees it: each host with its capacity, its pools, what its VMs take
 * and which affinity groups they belong to, read from the inventory in one pass.
 *
 * Pools: a shared pool is one pool everywhere and keeps its name. A local pool is a different
 * directory on each host, so each host also lists it as `name@hostId`: a VM whose data is
 * already in host A's local pool asks for `local@A`, while new disks may go to any host's
 * `local`.
 */
import type { HostFacts, HostState } from '../../wire/host.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';
import type { Db } from '../db/database.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import { clusterBaseline } from '../placement/cpu-models.ts';
import type { CpuDemand, HostNetwork, PlacementHost, VmGroup } from '../placement/model.ts';

/**
 * VM states that hold their host's CPU and memory. A stopped VM holds none, nor does one being
 * created: room is taken by a start, from its admission on (see `Reservation`).
 */
const holding = ['running', 'paused', 'unknown', 'unreachable'];

/** The room a start was admitted to on a host, held until the VM runs there (or fails to). */
export interface Reservation {
  hostId: string;
  vcpus: number;
  memoryMiB: number;
}

export interface ClusterSnapshot {
  hosts: PlacementHost[];
  facts: Map<string, HostFacts>;
}

/**
 * `without`: a VM being placed, left out so it neither takes room from nor groups with itself.
 * `reserved`: starts admitted and not yet running, by VM id.
 */
export async function clusterSnapshot(
  db: Db,
  without?: string,
  reserved: ReadonlyMap<string, Reservation> = new Map(),
): Promise<ClusterSnapshot> {
  const hostRows = await db.selectFrom('hosts').selectAll().orderBy('name').execute();
  const networks = await db.selectFrom('networks').select(['id', 'name']).execute();
  const said = networks.length
    ? await db.selectFrom('hostNetworks').select(['hostId', 'networkId', 'state', 'reason']).execute()
    : [];
  const vms = await db.selectFrom('vms').select(['id', 'hostId', 'state', 'spec']).execute();
  const members = await db.selectFrom('placementGroupMembers').select(['groupName', 'vmId']).execute();
  const groupsOf = new Map<string, string[]>();
  for (const m of members) groupsOf.set(m.vmId, [...(groupsOf.get(m.vmId) ?? []), m.groupName]);
  const used = new Map<string, { vcpus: number; memoryMiB: number; groups: Map<string, number> }>();
  const usedOn = (hostId: string) => {
    const u = used.get(hostId) ?? { vcpus: 0, memoryMiB: 0, groups: new Map<string, number>() };
    used.set(hostId, u);
    return u;
  };
  const holds = new Set<string>();
  for (const vm of vms) {
    if (!vm.hostId || vm.id === without) continue;
    const u = usedOn(vm.hostId);
    // Group membership counts whatever the VM's state: a stopped member still lives there.
    for (const g of groupsOf.get(vm.id) ?? []) u.groups.set(g, (u.groups.get(g) ?? 0) + 1);
    if (!holding.includes(vm.state)) continue;
    holds.add(vm.id);
    const spec = vmSpecOf(vm);
    u.vcpus += spec.vcpus;
    u.memoryMiB += spec.memoryMiB;
  }
  for (const [vmId, r] of reserved) {
    // A VM that runs already holds its room by its state; count it once.
    if (vmId === without || holds.has(vmId)) continue;
    const u = usedOn(r.hostId);
    u.vcpus += r.vcpus;
    u.memoryMiB += r.memoryMiB;
  }
  const facts = new Map<string, HostFacts>();
  const hosts: PlacementHost[] = [];
  for (const r of hostRows) {
    if (!r.facts) continue;
    const f = JSON.parse(r.facts) as HostFacts;
    facts.set(r.id, f);
    const u = used.get(r.id);
    hosts.push({
      id: r.id,
      name: r.name,
      state: r.state as HostState,
      cores: f.cores,
      memoryMiB: f.memoryMiB,
      cpu: { vendor: f.cpuVendor ?? 'unknown', model: f.cpuModel, flags: f.cpuFlags },
      pools: f.pools.flatMap((p) => {
        const pool = { name: p.name, shared: p.shared, freeBytes: p.freeBytes, sizeBytes: p.totalBytes };
        return p.shared ? [pool] : [pool, { ...pool, name: `${p.name}@${r.id}` }];
      }),
      allocated: { vcpus: u?.vcpus ?? 0, memoryMiB: u?.memoryMiB ?? 0 },
      groups: u?.groups ?? new Map(),
      uefi: f.uefi === true,
      networks: hostNetworks(
        networks,
        said.filter((s) => s.hostId === r.id),
      ),
    });
  }
  return { hosts, facts };
}

/**
 * Each network of the inventory as the host last said of it (networks/host-sync.ts records
 * that); one it has said nothing of is not ready there.
 */
function hostNetworks(
  networks: readonly { id: string; name: string }[],
  said: readonly { networkId: string; state: string; reason: string | null }[],
): Map<string, HostNetwork> {
  const out = new Map<string, HostNetwork>();
  for (const n of networks) {
    const s = said.find((x) => x.networkId === n.id);
    out.set(n.id, { name: n.name, ready: s?.state === 'ready', reason: s ? s.reason : null });
  }
  return out;
}

/** Every volume a VM's spec names: disks, seed, kernel and initrd, UEFI variables, CD-ROM medium. */
export function volumesOf(spec: VmSpec): VolumeRef[] {
  return [
    ...spec.disks.map((d) => d.volume),
    ...(spec.seed ? [spec.seed] : []),
    ...(spec.boot ? [spec.boot.kernel, ...(spec.boot.initrd ? [spec.boot.initrd] : [])] : []),
    ...(spec.efiVars ? [spec.efiVars] : []),
    ...(spec.cdrom?.medium ? [spec.cdrom.medium] : []),
  ];
}

/** The pool name placement must find for a volume that exists on `hostId` now. */
export function existingPool(snapshot: ClusterSnapshot, hostId: string, ref: VolumeRef): string {
  const shared = snapshot.facts.get(hostId)?.pools.some((p) => p.name === ref.pool && p.shared);
  return shared ? ref.pool : `${ref.pool}@${hostId}`;
}

/** The CPU model VMs in `compat` mode get: the best one every host that runs VMs supports. */
export function baselineOf(snapshot: ClusterSnapshot): { model: string; reason: string } {
  const cpus = snapshot.hosts.filter((h) => h.state !== 'offline').map((h) => h.cpu);
  return clusterBaseline(cpus.length > 0 ? cpus : snapshot.hosts.map((h) => h.cpu));
}

/** The CPU a VM needs on a new host: its compat model, or for `host` mode the CPU it runs on now. */
export function cpuDemand(
  snapshot: ClusterSnapshot,
  cpuMode: string,
  spec: VmSpec,
  runningOn: string | null,
): CpuDemand {
  if (cpuMode === 'host') {
    const h = runningOn ? snapshot.hosts.find((x) => x.id === runningOn) : undefined;
    return h ? { mode: 'host', sameAs: h.cpu } : { mode: 'host' };
  }
  const model =
    spec.cpuModel === 'host' || spec.cpuModel === 'max' ? baselineOf(snapshot).model : spec.cpuModel;
  return { mode: 'compat', model };
}

export async function groupsOfVm(db: Db, vmId: string): Promise<VmGroup[]> {
  const rows = await db
    .selectFrom('placementGroupMembers')
    .innerJoin('placementGroups', 'placementGroups.name', 'placementGroupMembers.groupName')
    .select(['placementGroups.name', 'placementGroups.kind'])
    .where('placementGroupMembers.vmId', '=', vmId)
    .execute();
  return rows.map((r) => ({ name: r.name, kind: r.kind as VmGroup['kind'] }));
}

/** The placement groups of each of `vmIds` that is in any, in one read. */
export async function groupsOfVms(db: Db, vmIds: readonly string[]): Promise<Map<string, VmGroup[]>> {
  const byVm = new Map<string, VmGroup[]>();
  if (vmIds.length === 0) return byVm;
  const rows = await db
    .selectFrom('placementGroupMembers')
    .innerJoin('placementGroups', 'placementGroups.name', 'placementGroupMembers.groupName')
    .select(['placementGroupMembers.vmId', 'placementGroups.name', 'placementGroups.kind'])
    .where('placementGroupMembers.vmId', 'in', vmIds)
    .execute();
  for (const r of rows) {
    byVm.set(r.vmId, [...(byVm.get(r.vmId) ?? []), { name: r.name, kind: r.kind as VmGroup['kind'] }]);
  }
  return byVm;
}
