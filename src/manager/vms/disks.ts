/**
 * A VM's disks: grow (online through QMP when it runs, with qemu-img when not), add and
 * remove (hot-plugged when it runs: q35 VMs have spare PCIe root ports for that).
 */
import { asTernError, TernError } from '../../errors.ts';
import { diskSerial } from '../../wire/guest-command.ts';
import { type DiskSpec, diskSlot, hotplugSlots, type VmSpec, withoutDisk } from '../../wire/vm.ts';
import { vmSpecOf } from '../db/vm-spec.ts';
import type { TaskKind } from '../tasks/engine.ts';
import { Undo } from '../tasks/undo.ts';
import { loadDisk, loadVm, type VmDeps } from './deps.ts';
import { type GrowthReport, growInGuest } from './grow-fs.ts';
import { keepVolumes } from './kept.ts';

export interface ResizeParams {
  vmId: string;
  index: number;
  sizeBytes: number;
  /** Also grow the partition and filesystem inside the guest (grow-fs.ts). */
  growFs?: boolean;
}

export function resizeTask(deps: VmDeps): TaskKind<ResizeParams> {
  return {
    kind: 'vm.disk.resize',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const { row, disk, agent } = await loadDisk(deps, p.vmId, p.index);
      const current = await agent.volumeInfo(disk.volume);
      if (!current)
        throw new TernError('storage_error', `disk ${p.index} of ${row.name} is missing on its host`);
      if (p.sizeBytes < current.virtualBytes) {
        throw new TernError(
          'invalid_request',
          `disk ${p.index} is ${current.virtualBytes} bytes; disks only grow`,
        );
      }
      // A run interrupted after the host grew the disk only has the inventory left to update.
      if (current.virtualBytes < p.sizeBytes) {
        if (row.state === 'running' || row.state === 'paused') {
          await ctx.step('growing the disk online (the guest sees the new size at once)', 30);
          await agent.resizeDisk(p.vmId, p.index, p.sizeBytes);
        } else if (row.state === 'stopped') {
          await ctx.step('growing the disk image', 30);
          await agent.resizeVolume({ volume: disk.volume, sizeBytes: p.sizeBytes });
        } else {
          throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
        }
      }
      const sizeBytes = await recordDiskSize(deps, p.vmId, p.index);
      if (!p.growFs) return { index: p.index, sizeBytes };
      // Idempotent (growpart and the resizers do nothing when there is nothing to grow), so a
      // resumed run does it again; the disk has grown either way, so the task succeeds.
      let filesystem: GrowthReport;
      if (row.state === 'running') {
        await ctx.step('growing the partition and filesystem inside the guest', 70);
        const serial = diskSerial(diskSlot(disk, p.index));
        filesystem = await growInGuest((req) => agent.guestExec(p.vmId, req), serial);
      } else {
        const why = `VM ${row.name} is ${row.state}: the filesystem was not grown (it grows with --grow-fs while the VM runs)`;
        filesystem = { grown: [], notGrown: [why], message: why };
      }
      await ctx.log(filesystem.message);
      return { index: p.index, sizeBytes, filesystem };
    },
    async cleanup(_ctx, p) {
      // The host may have grown the disk before the failure: the inventory says what it has.
      const undo = new Undo();
      await undo.step(`read the size of disk ${p.index} back`, () => recordDiskSize(deps, p.vmId, p.index));
      undo.done();
    },
  };
}

/** Reads a disk's size from its host into the inventory; reality wins. */
async function recordDiskSize(deps: VmDeps, vmId: string, index: number): Promise<number> {
  const { row, disk, agent } = await loadDisk(deps, vmId, index);
  const info = await agent.volumeInfo(disk.volume);
  if (!info) throw new TernError('storage_error', `disk ${index} of ${row.name} is missing on its host`);
  const sizes = JSON.parse(row.diskSizes) as number[];
  if (sizes[index] !== info.virtualBytes) {
    sizes[index] = info.virtualBytes;
    await deps.store.update(vmId, { diskSizes: JSON.stringify(sizes) });
  }
  return info.virtualBytes;
}

/**
 * How many bytes growing disk `index` to `sizeBytes` adds, refused before any task when the VM
 * has no such disk or the size is below the disk's: disks only grow (a shrink would cut off
 * whatever the guest keeps at the disk's end).
 */
export function growth(
  vm: { name: string; diskSizes: string; spec: string },
  index: number,
  sizeBytes: number,
) {
  if (vmSpecOf(vm).disks[index] === undefined)
    throw new TernError('not_found', `VM ${vm.name} has no disk ${index}`);
  const current = (JSON.parse(vm.diskSizes) as number[])[index] ?? 0;
  if (sizeBytes < current)
    throw new TernError(
      'conflict',
      `disk ${index} of ${vm.name} is ${current} bytes, more than ${sizeBytes}: disks only grow`,
      { sizeBytes: current },
    );
  return sizeBytes - current;
}

/** The lowest free disk slot; on q35 only the slots with a hot-pluggable port. */
export function freeSlot(spec: VmSpec): number {
  const used = new Set(spec.disks.map((d, i) => diskSlot(d, i)));
  const limit = spec.machine === 'q35' ? hotplugSlots : 16;
  for (let slot = 0; slot < limit; slot++) if (!used.has(slot)) return slot;
  throw new TernError('conflict', `VM ${spec.name} has no free disk slot (${limit} at most)`);
}

export interface AttachParams {
  vmId: string;
  disk: DiskSpec;
  /** A new empty volume to make first; absent when attaching an existing one. */
  sizeBytes?: number;
}

export function attachTask(deps: VmDeps): TaskKind<AttachParams> {
  return {
    kind: 'vm.disk.attach',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const { row, spec, agent } = await loadVm(deps, p.vmId);
      let size: number;
      if (p.sizeBytes) {
        await ctx.step(`creating ${p.disk.volume.path}`, 20);
        size = (await agent.createVolume({ volume: p.disk.volume, format: 'qcow2', sizeBytes: p.sizeBytes }))
          .virtualBytes;
      } else {
        const info = await agent.volumeInfo(p.disk.volume);
        if (!info)
          throw new TernError(
            'not_found',
            `volume ${p.disk.volume.pool}:${p.disk.volume.path} does not exist`,
          );
        size = info.virtualBytes;
      }
      if (row.state === 'running' || row.state === 'paused') {
        await ctx.step('plugging the disk into the running VM', 60);
        await agent.attachDisk(p.vmId, p.disk);
      } else if (row.state !== 'stopped') {
        throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
      }
      const sizes = JSON.parse(row.diskSizes) as number[];
      await deps.store.update(p.vmId, {
        spec: JSON.stringify({ ...spec, disks: [...spec.disks, p.disk] }),
        diskSizes: JSON.stringify([...sizes, size]),
      });
      return { index: spec.disks.length, slot: p.disk.slot, volume: p.disk.volume };
    },
    async cleanup(_ctx, p, err) {
      const row = await deps.store.row(p.vmId).catch(() => null);
      if (!row?.hostId) return;
      const spec = vmSpecOf(row);
      const same = (d: DiskSpec) =>
        d.volume.pool === p.disk.volume.pool && d.volume.path === p.disk.volume.path;
      if (spec.disks.some(same)) return;
      const agent = deps.hosts.client(row.hostId);
      const undo = new Undo();
      if (row.state === 'running' || row.state === 'paused') {
        // The host may have plugged the disk in before the task failed (a manager killed while it
        // did): it comes out again, at the index after the disks the inventory lists.
        try {
          await agent.detachDisk(p.vmId, spec.disks.length);
        } catch (detachErr) {
          if (asTernError(detachErr).code !== 'not_found') {
            // The guest holds it, or its host cannot be asked: the inventory lists the disk
            // rather than pretend it is not there, and its volume stays.
            const info = await agent.volumeInfo(p.disk.volume).catch(() => null);
            await deps.store.update(p.vmId, {
              spec: JSON.stringify({ ...spec, disks: [...spec.disks, p.disk] }),
              diskSizes: JSON.stringify([
                ...(JSON.parse(row.diskSizes) as number[]),
                info?.virtualBytes ?? 0,
              ]),
            });
            undo.fail(`unplug ${p.disk.volume.path} (it stays attached)`, detachErr);
            return undo.done();
          }
        }
      }
      // A volume that was there before this task (a conflict on creation) is not ours to remove.
      if (p.sizeBytes && err.code !== 'conflict')
        await undo.step(`remove ${p.disk.volume.path}`, () => agent.deleteVolume(p.disk.volume));
      undo.done();
    },
  };
}

export interface DetachParams {
  vmId: string;
  index: number;
  keep: boolean;
}

export function detachTask(deps: VmDeps): TaskKind<DetachParams> {
  return {
    kind: 'vm.disk.detach',
    onInterrupt: 'fail',
    async run(ctx, p) {
      const { row, spec, disk, agent } = await loadDisk(deps, p.vmId, p.index);
      if (row.state === 'running' || row.state === 'paused') {
        if (p.index === 0)
          throw new TernError('conflict', `disk 0 is ${row.name}'s boot disk; stop the VM first`);
        await ctx.step('asking the guest to release the disk', 30);
        await agent.detachDisk(p.vmId, p.index);
      } else if (row.state !== 'stopped') {
        throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
      }
      const sizes = JSON.parse(row.diskSizes) as number[];
      await deps.store.update(p.vmId, {
        spec: JSON.stringify({ ...spec, disks: withoutDisk(spec, p.index) }),
        diskSizes: JSON.stringify(sizes.filter((_, i) => i !== p.index)),
      });
      if (!p.keep) {
        await ctx.step(`removing ${disk.volume.path}`, 80);
        await agent.deleteVolume(disk.volume);
      } else {
        await keepVolumes(deps.db, [disk.volume]);
      }
      return { detached: disk.volume, kept: p.keep };
    },
    async cleanup(ctx, p) {
      // The host may have unplugged the disk before the task failed (a manager killed while it
      // did); the inventory still lists it, so it goes back in. Still plugged in: a conflict.
      const vm = await loadDisk(deps, p.vmId, p.index).catch(() => null);
      if (!vm || (vm.row.state !== 'running' && vm.row.state !== 'paused')) return;
      const undo = new Undo();
      await undo.step(`plug disk ${p.index} back in`, async () => {
        try {
          await vm.agent.attachDisk(p.vmId, { ...vm.disk, slot: diskSlot(vm.disk, p.index) });
          await ctx.log(`disk ${p.index} was plugged back in`);
        } catch (err) {
          if (asTernError(err).code !== 'conflict') throw err;
        }
      });
      undo.done();
    },
  };
}
