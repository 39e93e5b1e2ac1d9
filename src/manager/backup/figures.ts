/**
 * What a backup cost and what it gives, from the host's result (pure): the figures the
 * inventory keeps and the API shows, and the progress line a task shows while it runs.
 */
import type { BackupDiskResult, TransferProgress } from '../../wire/backup.ts';

export interface BackupFigures {
  sizeBytes: number;
  changedBytes: number;
  readBytes: number;
  newBytes: number;
}

export function figuresOf(disks: readonly BackupDiskResult[]): BackupFigures {
  const sum = (f: (d: BackupDiskResult) => number) => disks.reduce((a, d) => a + f(d), 0);
  return {
    sizeBytes: sum((d) => d.sizeBytes),
    changedBytes: sum((d) => d.dirtyBytes),
    readBytes: sum((d) => d.readBytes),
    newBytes: sum((d) => d.newBytes),
  };
}

/** How many times smaller than a plain copy this backup's new storage was; null when it stored nothing. */
export function dedupRatio(f: Pick<BackupFigures, 'sizeBytes' | 'newBytes'>): number | null {
  if (f.newBytes <= 0) return null;
  return Math.round((f.sizeBytes / f.newBytes) * 100) / 100;
}

/** Full when any disk was read whole. */
export function modeOf(disks: readonly Pick<BackupDiskResult, 'mode'>[]): 'full' | 'incremental' {
  return disks.some((d) => d.mode === 'full') ? 'full' : 'incremental';
}

const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytesText(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

function durationText(s: number): string {
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** `disk0: 1.2 GiB of 4.0 GiB read, 300.0 MiB written, 120.0 MiB/s, ETA 24 s`. */
export function progressText(p: TransferProgress, verb = 'read'): string {
  const left = Math.max(0, p.totalBytes - p.doneBytes);
  const eta = p.bytesPerS > 0 ? `, ETA ${durationText(left / p.bytesPerS)}` : '';
  return (
    `${p.item}: ${bytesText(p.doneBytes)} of ${bytesText(p.totalBytes)} ${verb}, ` +
    `${bytesText(p.writtenBytes)} written, ${bytesText(p.bytesPerS)}/s${eta}`
  );
}

/** Percent done over the whole of a task made of parts: `done` bytes before this part, of `total`. */
export function percentOf(before: number, p: Pick<TransferProgress, 'doneBytes'>, total: number): number {
  if (total <= 0) return 0;
  return Math.min(99, Math.round(((before + p.doneBytes) / total) * 100));
}
