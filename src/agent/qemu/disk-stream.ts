/**
 * The end of a live restore on a running VM: each restored disk's data streamed from its
 * backing (the backup, served over NBD) into its overlay by QEMU's `block-stream`, while the
 * guest runs; once every job completed the overlays stand alone.
 */
import { TernError } from '../../errors.ts';
import type { TransferProgress } from '../../wire/backup.ts';
import { diskSlot } from '../../wire/vm.ts';
import { JobEndings, jobEvents } from './disk-mirror.ts';
import { blockStream, queryBlockJobs } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';
import { gone, watchEvents } from './vm-waits.ts';

/** Streams disks `indexes` of a running VM; resolves with the bytes streamed once all are done. */
export async function streamDisks(
  vm: VmProcess,
  indexes: readonly number[],
  bytesPerS: number,
  progress: (p: TransferProgress) => void,
  signal: AbortSignal,
): Promise<number> {
  const jobs = indexes.map((i) => {
    const disk = vm.spec.disks[i];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${i}`);
    const slot = diskSlot(disk, i);
    return { id: `restore-disk${slot}`, node: vm.blockNodes(slot).format };
  });
  const ids = jobs.map((j) => j.id);
  const endings = new JobEndings(vm, ids);
  const pace = watchEvents(vm, jobEvents);
  try {
    const running = new Set((await queryBlockJobs(vm.monitor)).map((j) => j.id));
    // A job still running from before an agent restart is followed, not started twice.
    for (const j of jobs) if (!running.has(j.id)) await blockStream(vm.monitor, j.id, j.node, bytesPerS);
    const started = Date.now();
    let streamed = 0;
    for (;;) {
      const mine = (await queryBlockJobs(vm.monitor)).filter((j) => ids.includes(j.id));
      for (const id of ids) {
        const why = endings.error(id);
        if (why) throw new TernError('hypervisor_error', `streaming ${id} failed: ${why}`);
      }
      const live = mine.filter((j) => j.status !== 'concluded' && j.status !== 'null');
      streamed = Math.max(
        streamed,
        mine.reduce((n, j) => n + j.offset, 0),
      );
      const total = mine.reduce((n, j) => n + j.length, 0);
      progress({
        type: 'progress',
        item: ids.join(','),
        doneBytes: streamed,
        totalBytes: Math.max(total, streamed),
        writtenBytes: streamed,
        bytesPerS: (streamed * 1000) / Math.max(1, Date.now() - started),
      });
      if (live.length === 0) return streamed;
      if (signal.aborted) throw new TernError('cancelled', 'the live restore was cancelled');
      const stop = gone(vm);
      if (stop) throw stop;
      await pace.next(500);
    }
  } finally {
    pace.close();
    endings.close();
  }
}
