/**
 * VM snapshots: internal qcow2 snapshots of all of a VM's writable disks (why internal:
 * src/agent/qemu/snapshots.ts). Taken running (filesystems frozen through the guest agent
 * when it answers) or stopped; reverted and listed from the disks themselves.
 */
import { TernError } from '../../errors.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { loadVm, type VmDeps } from './deps.ts';
import { forceOffFirst, refuseUnreachable } from './unreachable.ts';

export interface SnapshotParams {
  vmId: string;
  name: string;
}

export interface Snapshot {
  name: string;
  createdAt: string;
}

async function context(deps: VmDeps, vmId: string) {
  const { row, spec, agent } = await loadVm(deps, vmId);
  const disks: VolumeRef[] = spec.disks
    .filter((d) => !d.readonly && d.format === 'qcow2')
    .map((d) => d.volume);
  if (disks.length === 0) throw new TernError('conflict', `VM ${row.name} has no qcow2 disk to snapshot`);
  return { row, disks, agent };
}

/** The snapshots of a VM, as its first disk records them. */
export async function listSnapshots(deps: VmDeps, vmId: string): Promise<Snapshot[]> {
  const { disks, agent } = await context(deps, vmId);
  return (await agent.volumeInfo(disks[0]))?.snapshots ?? [];
}

const live = (state: string) => state === 'running' || state === 'paused';

export function snapshotCreateTask(deps: VmDeps): TaskKind<SnapshotParams> {
  return {
    kind: 'vm.snapshot.create',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const { row, disks, agent } = await context(deps, p.vmId);
      refuseUnreachable(row, forceOffFirst(row.name));
      if ((await listSnapshots(deps, p.vmId)).some((s) => s.name === p.name)) {
        throw new TernError('conflict', `VM ${row.name} already has a snapshot ${p.name}`);
      }
      if (live(row.state)) {
        await ctx.step('freezing guest filesystems and snapshotting every disk at once', 30);
        const r = await agent.snapshotVm(p.vmId, p.name);
        await ctx.log(`snapshot is ${r.consistency}`);
        return { name: p.name, consistency: r.consistency };
      }
      if (row.state !== 'stopped') throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
      for (const [i, volume] of disks.entries()) {
        await ctx.step(`snapshotting ${volume.path}`, (i / disks.length) * 100);
        await agent.volumeSnapshot({ volume, op: 'create', name: p.name });
      }
      return { name: p.name, consistency: 'powered-off' };
    },
    async cleanup(ctx, p, err) {
      if (err.code === 'conflict') return;
      const { row, disks, agent } = await context(deps, p.vmId).catch(() => ({
        row: null,
        disks: [],
        agent: null,
      }));
      if (!row || !agent) return;
      if (live(row.state)) {
        // A snapshot cut short (its host's agent killed between freeze and thaw) may have left
        // the guest's filesystems frozen; the host also thaws them once its guest agent answers.
        await agent.act(p.vmId, 'thaw').then(
          () => ctx.log("the guest's filesystems are thawed"),
          (e: Error) => ctx.log(`could not thaw the guest's filesystems yet (${e.message}); its host will`),
        );
        return;
      }
      // Offline snapshots are undone only on disks no QEMU may hold (not an unreachable VM's).
      if (row.state !== 'stopped') return;
      const undo = new Undo();
      for (const volume of disks) {
        await undo.step(`remove snapshot ${p.name} of ${volume.path}`, async () => {
          const info = await agent.volumeInfo(volume);
          if (info?.snapshots?.some((s) => s.name === p.name))
            await agent.volumeSnapshot({ volume, op: 'delete', name: p.name });
        });
      }
      undo.done();
    },
  };
}

export function snapshotRevertTask(deps: VmDeps): TaskKind<SnapshotParams> {
  return {
    kind: 'vm.snapshot.revert',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, disks, agent } = await context(deps, p.vmId);
      refuseUnreachable(row, forceOffFirst(row.name));
      if (row.state !== 'stopped')
        throw new TernError('conflict', `VM ${row.name} is ${row.state}; stop it to revert`);
      // Check every disk first, so a revert is all or nothing.
      for (const volume of disks) {
        const info = await agent.volumeInfo(volume);
        if (!info?.snapshots?.some((s) => s.name === p.name)) {
          throw new TernError('not_found', `disk ${volume.path} of ${row.name} has no snapshot ${p.name}`);
        }
      }
      for (const [i, volume] of disks.entries()) {
        await ctx.step(`reverting ${volume.path}`, (i / disks.length) * 100);
        await agent.volumeSnapshot({ volume, op: 'apply', name: p.name });
      }
      return { name: p.name };
    },
  };
}

export function snapshotDeleteTask(deps: VmDeps): TaskKind<SnapshotParams> {
  return {
    kind: 'vm.snapshot.delete',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, disks, agent } = await context(deps, p.vmId);
      refuseUnreachable(row, forceOffFirst(row.name));
      if (!(await listSnapshots(deps, p.vmId)).some((s) => s.name === p.name)) {
        throw new TernError('not_found', `VM ${row.name} has no snapshot ${p.name}`);
      }
      await ctx.step('deleting the snapshot from every disk', 30);
      if (live(row.state)) {
        await agent.deleteVmSnapshot(p.vmId, p.name);
      } else {
        for (const volume of disks) {
          await agent.volumeSnapshot({ volume, op: 'delete', name: p.name }).catch((err: TernError) => {
            if (!/not find|not exist|not found/i.test(err.message)) throw err;
          });
        }
      }
      return { name: p.name };
    },
  };
}
