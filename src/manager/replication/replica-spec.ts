/**
 * The replica's spec (pure): the primary's, with the replica's own id and name, and each
 * replicated disk (every writable one, named `disk<index>` as backup names them) pointing at
 * its file of a recovery point in the target pool: `replicas/<replication>/<disk>/<point>.qcow2`
 * (docs/replication.md). Read-only disks stay as they are. Before the first point the disks
 * name `no-point-yet.qcow2`, a file that never exists: nothing can run such a replica.
 */
import type { HostFacts } from '../../wire/host.ts';
import type { VmSpec, VolumeRef } from '../../wire/vm.ts';
import { backupDisks } from '../backup/names.ts';

export const noPointYet = 'no-point-yet';

/** The file of disk `disk` at point `point` in a replica's pool. */
export function pointVolume(pool: string, replicationId: string, disk: string, point: string): VolumeRef {
  return { pool, path: `replicas/${replicationId}/${disk}/${point}.qcow2` };
}

/** The disks a replication sends: the primary's writable ones, `disk<index>`. */
export const replicatedDisks = backupDisks;

export function replicaSpec(
  primary: VmSpec,
  replica: { id: string; name: string; pool: string; replicationId: string },
  point: string | null,
): VmSpec {
  return {
    ...primary,
    id: replica.id,
    name: replica.name,
    disks: primary.disks.map((d, i) =>
      d.readonly
        ? d
        : {
            ...d,
            format: 'qcow2' as const,
            // The slot is kept so a failed-over replica's disks sit where the guest knew them.
            slot: d.slot ?? i,
            volume: pointVolume(replica.pool, replica.replicationId, `disk${i}`, point ?? noPointYet),
          },
    ),
  };
}

/** `web-1` → `web-1-replica`, shortened to stay a valid name. */
export function replicaName(vmName: string): string {
  const suffix = '-replica';
  return `${vmName.slice(0, 63 - suffix.length).replace(/-+$/, '')}${suffix}`;
}

/**
 * Why the replica could never start on the target, or null: files the replica uses as they are
 * (a kernel booted directly, read-only disks) must be in a pool both hosts share, as a migration
 * needs them to be; the disks the replication copies, the seed and the UEFI variables need not.
 * `target` null: another site, which shares no pool with this cluster.
 */
export function unreachableFiles(
  spec: VmSpec,
  source: HostFacts | null,
  target: HostFacts | null,
): string | null {
  const shared = (f: HostFacts | null, pool: string) => !!f?.pools.some((p) => p.name === pool && p.shared);
  const reach = (ref: VolumeRef) => target !== null && shared(source, ref.pool) && shared(target, ref.pool);
  const where = target === null ? 'the other site' : `host ${target.hostname}`;
  for (const [what, ref] of [
    ['boot kernel', spec.boot?.kernel],
    ['boot initrd', spec.boot?.initrd],
  ] as const)
    if (ref && !reach(ref))
      return `the ${what} (${ref.pool}:${ref.path}) is in a pool ${where} cannot reach: a replica there could never start; keep boot files on shared storage`;
  // Read-only disks go with the replica only within a cluster (a site's replica drops them).
  if (target !== null)
    for (const [i, d] of spec.disks.entries())
      if (d.readonly && !reach(d.volume))
        return `read-only disk ${i} (${d.volume.pool}:${d.volume.path}) is in a pool ${where} cannot reach`;
  return null;
}
