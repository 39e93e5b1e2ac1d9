/**
 * Waiting on a running VM's QEMU: the pace of its events (act on a state change at once, sample
 * progress otherwise) and whether QEMU ended meanwhile. Used by migrations and block jobs.
 */
import { TernError } from '../../errors.ts';
import type { QmpEventName } from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';

export interface EventPace {
  /**
   * Resolves at the first of the watched events since the watch began or the last `next`, or
   * after `ms` at the latest: progress is sampled at that pace, and a state change is acted on
   * as soon as QEMU reports it — even one that arrived while the caller was querying.
   */
  next(ms: number): Promise<void>;
  close(): void;
}

/** Starts watching now, before the caller's first query, so no event falls between the two. */
export function watchEvents(vm: VmProcess, names: readonly QmpEventName[]): EventPace {
  let seen = false;
  let wake: (() => void) | null = null;
  const off = vm.onEvent((e) => {
    if (!names.includes(e.event as QmpEventName)) return;
    seen = true;
    wake?.();
  });
  return {
    async next(ms) {
      if (!seen) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
      seen = false;
    },
    close: off,
  };
}

/** The VM's QEMU ended (crashed or stopped) while we waited on it. */
export function gone(vm: VmProcess): TernError | null {
  return vm.state === 'crashed' || vm.state === 'stopped'
    ? new TernError('hypervisor_error', `QEMU of ${vm.spec.name} ended: ${vm.snapshot().reason ?? vm.state}`)
    : null;
}
