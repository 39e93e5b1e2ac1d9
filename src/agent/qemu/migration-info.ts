/**
 * What QEMU says about migrations and block jobs (query-migrate, query-block-jobs, event
 * timestamps), read defensively: a reply of an unexpected shape becomes zeros and nulls or
 * a clear error, never a crash or a NaN on the wire.
 */
import { TernError } from '../../errors.ts';
import type { QmpEvent } from './qmp.ts';

export interface MigrationInfo {
  /** setup, active, pre-switchover, device, completed, failed, cancelling, cancelled, ... */
  status: string;
  transferredBytes: number;
  totalBytes: number;
  remainingBytes: number;
  speedMiBps: number;
  dirtyBytesPerS: number;
  expectedDowntimeMs: number | null;
  downtimeMs: number | null;
  totalMs: number | null;
  /** Incoming side: the ports QEMU listens on (it picks one when asked for port 0). */
  ports: number[];
  error: string | null;
}

const count = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
const maybe = (v: unknown): number | null =>
  typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : null;
const record = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

export function readMigrationInfo(raw: unknown): MigrationInfo {
  const r = record(raw);
  const ram = record(r.ram);
  const pageSize = count(ram['page-size']) || 4096;
  const ports = Array.isArray(r['socket-address'])
    ? r['socket-address'].flatMap((a) => {
        const port = Number.parseInt(String(record(a).port ?? ''), 10);
        return Number.isInteger(port) && port > 0 && port < 65536 ? [port] : [];
      })
    : [];
  return {
    // No status at all is what an idle QEMU answers (no migration yet).
    status: typeof r.status === 'string' ? r.status.slice(0, 32) : 'none',
    transferredBytes: count(ram.transferred),
    totalBytes: count(ram.total),
    remainingBytes: count(ram.remaining),
    // QEMU reports megabits per second.
    speedMiBps: (count(ram.mbps) * 1e6) / 8 / 2 ** 20,
    dirtyBytesPerS: count(ram['dirty-pages-rate']) * pageSize,
    expectedDowntimeMs: maybe(r['expected-downtime']),
    downtimeMs: maybe(r.downtime),
    totalMs: maybe(r['total-time']),
    ports,
    error: typeof r['error-desc'] === 'string' ? r['error-desc'].slice(0, 500) : null,
  };
}

export interface BlockJob {
  id: string;
  type: string;
  status: string;
  ready: boolean;
  offset: number;
  length: number;
  error: string | null;
}

export function readBlockJobs(raw: unknown): BlockJob[] {
  if (!Array.isArray(raw))
    throw new TernError('protocol_error', 'QEMU answered query-block-jobs with a non-list');
  return raw.slice(0, 256).flatMap((j) => {
    const r = record(j);
    if (typeof r.device !== 'string') return [];
    return [
      {
        id: r.device.slice(0, 128),
        type: typeof r.type === 'string' ? r.type : '',
        status: typeof r.status === 'string' ? r.status : '',
        ready: r.ready === true,
        offset: count(r.offset),
        length: count(r.len),
        error: typeof r.error === 'string' ? r.error.slice(0, 500) : null,
      },
    ];
  });
}

/** An event's own time (epoch ms), or now when QEMU sent none we can read. */
export function eventTime(e: QmpEvent): number {
  const t = record(e.timestamp);
  const s = count(t.seconds);
  return s > 0 ? s * 1000 + Math.floor(count(t.microseconds) / 1000) : Date.now();
}
