/**
 * Storage migration: one disk of a VM moves to another pool of its host. A running VM keeps
 * running (its host mirrors the disk and switches over); a stopped one gets a copy. Either way
 * the spec names the new volume before the old one is removed. A failed copy of a stopped VM's
 * disk is removed again.
 */
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
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
    async cleanup(_ctx, p, err) {
      // A refusal made nothing; a spec that names the new pool means the move was done.
      if (err.code === 'conflict' || err.code === 'not_found') return;
      const vm = await loadDisk(deps, p.vmId, p.index).catch(() => null);
      if (!vm || vm.disk.volume.pool === p.pool) return;
      const to = { pool: p.pool, path: vm.disk.volume.path };
      const undo = new Undo();
      if (vm.row.state === 'running' || vm.row.state === 'paused') {
        // The host may have switched the guest over to the copy before the failure, and only
        // QEMU knows which file it writes to: removing the copy could take the disk away.
        undo.fail(
          `remove the copy ${to.pool}:${to.path}`,
          new TernError('conflict', 'the running VM may already use it'),
        );
      } else {
        // A stopped VM uses what its spec names; the copy would block the next move.
        await undo.step(`remove the copy ${to.pool}:${to.path}`, () => vm.agent.deleteVolume(to));
      }
      undo.done();
    },
  };
}
