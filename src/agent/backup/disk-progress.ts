/**
 * A disk's progress lines while it is read and written (a backup) or sent (a replication): at
 * most one a second, unless forced (the first and the last), the rate over the time since it
 * began.
 */
import type { TransferProgress } from '../../wire/backup.ts';

const PROGRESS_EVERY_MS = 1000;

/** The counts as they stand: done, written, and the bytes the rate is of. */
export interface ProgressCounts {
  doneBytes: number;
  writtenBytes: number;
  rateBytes: number;
}

export function diskProgress(
  report: (p: TransferProgress) => void,
  item: string,
  totalBytes: number,
  counts: () => ProgressCounts,
): (force?: boolean) => void {
  const started = Date.now();
  let shownAt = 0;
  return (force = false) => {
    if (!force && Date.now() - shownAt < PROGRESS_EVERY_MS) return;
    shownAt = Date.now();
    const s = Math.max(0.001, (Date.now() - started) / 1000);
    const c = counts();
    report({
      type: 'progress',
      item,
      doneBytes: c.doneBytes,
      totalBytes,
      writtenBytes: c.writtenBytes,
      bytesPerS: Math.round(c.rateBytes / s),
    });
  };
}
