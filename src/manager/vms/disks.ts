/** vm.disk.resize: grows a VM's disk, online through QMP when it runs, with qemu-img when not. */
import { TernError } from '../../errors.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { TaskKind } from '../tasks/engine.ts';
import type { VmDeps } from './deps.ts';

export interface ResizeParams {
  vmId: string;
  index: number;
  sizeBytes: number;
}

export function resizeTask(deps: VmDeps): TaskKind<ResizeParams> {
  return {
    kind: 'vm.disk.resize',
    onInterrupt: 'resume',
    async run(ctx, p) {
      const row = await deps.store.row(p.vmId);
      const spec = JSON.parse(row.spec) as VmSpec;
      const disk = spec.disks[p.index];
      if (!disk) throw new TernError('not_found', `VM ${row.name} has no disk ${p.index}`);
      const agent = deps.hosts.client(row.hostId!);
      const current = await agent.volumeInfo(disk.volume);
      if (!current)
        throw new TernError('storage_error', `disk ${p.index} of ${row.name} is missing on its host`);
      if (p.sizeBytes < current.virtualBytes) {
        throw new TernError(
          'invalid_request',
          `disk ${p.index} is ${current.virtualBytes} bytes; disks only grow`,
        );
      }
      if (row.state === 'running' || row.state === 'paused') {
        await ctx.step('growing the disk online (the guest sees the new size at once)', 30);
        await agent.resizeDisk(p.vmId, p.index, p.sizeBytes);
      } else if (row.state === 'stopped') {
        await ctx.step('growing the disk image', 30);
        await agent.resizeVolume({ volume: disk.volume, sizeBytes: p.sizeBytes });
      } else {
        throw new TernError('conflict', `VM ${row.name} is ${row.state}`);
      }
      const sizes = JSON.parse(row.diskSizes) as number[];
      sizes[p.index] = p.sizeBytes;
      await deps.store.update(p.vmId, { diskSizes: JSON.stringify(sizes) });
      return { index: p.index, sizeBytes: p.sizeBytes };
    },
  };
}
