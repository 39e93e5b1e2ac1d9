/**
 * Storage migration: one disk of a VM moves to another pool of its host. A running VM keeps
 * running (its host mirrors the disk and switches over); a stopped one gets a copy. Either way
 * the spec names the new volume before the old one is removed.
 */
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { loadDisk, type VmDeps } from '../vms/deps.ts';

export interface MoveDiskParams {
  vmId: string;
  index: number;
  pool: string;
}

export function moveDiskTask(deps: VmDeps): TaskKind<MoveDiskParams> {
  return {
    kind: 'vm.disk.move',
    // Re-running compares the spec with the target: a finished move is not done twice.
    onInterrupt: 'fail',
    async run(ctx, p) {
      const { row, spec, agent, disk } = await loadDisk(deps, p.vmId, p.index);
      if (disk.volume.pool === p.pool)
        throw new TernError('conflict', `disk ${p.index} is already in pool ${p.pool}`);
      if (disk.readonly)
        throw new TernError('conflict', `disk ${p.index} is read-only; attach a copy instead`);
      const facts = (await deps.hosts.get(row.hostId!)).facts;
      if (!facts?.pools.some((x) => x.name === p.pool)) {
        throw new TernError('not_found', `host ${row.hostId} has no storage pool ${p.pool}`, {
          field: 'pool',
        });
      }
      const from = disk.volume;
      const to = { pool: p.pool, path: from.path };
      if (row.state === 'running' || row.state === 'paused') {
        await ctx.step(`mirroring to ${p.pool}`, 5);
        await agent.moveDisk(
          p.vmId,
          { index: p.index, target: to },
          (r) => {
            if (r.type === 'progress' && r.totalBytes > 0)
              void ctx.progress(5 + Math.round((r.transferredBytes / r.totalBytes) * 85));
          },
          ctx.signal,
        );
      } else if (row.state === 'stopped') {
        await ctx.step(`copying to ${p.pool}`, 5);
        await agent.createVolume({ volume: to, format: disk.format, copyOf: from });
      } else {
        throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
      }
      const next: VmSpec = {
        ...spec,
        disks: spec.disks.map((d, i) => (i === p.index ? { ...d, volume: to } : d)),
      };
      await deps.store.update(p.vmId, { spec: JSON.stringify(next) });
      await ctx.step('removing the old volume', 95);
      await agent
        .deleteVolume(from)
        .catch((err: Error) => ctx.log(`could not remove ${from.path}: ${err.message}`));
      return { disk: p.index, from: `${from.pool}:${from.path}`, to: `${to.pool}:${to.path}` };
    },
  };
}
