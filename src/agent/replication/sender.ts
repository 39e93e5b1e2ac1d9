/**
 * The primary host's side of a replication cycle: a point-in-time view of the VM (the same
 * view backup reads: ../backup/view.ts) streamed to the replica's host as point `req.point`.
 * Per disk, incremental (only what its dirty bitmap marks) or whole (the first point, or a
 * bitmap that cannot be trusted, saying why), in frames (./frames.ts: zstd, each with its
 * SHA-256, the stream chained to one final digest), paced to the cycle's bandwidth, with a
 * progress line each second. The point is the replica's only once its host answered with the
 * same final digest; anything else fails the cycle and the replica keeps its older points.
 */
import { TernError } from '../../errors.ts';
import type {
  ReplicatedDisk,
  ReplicateVmReport,
  ReplicateVmRequest,
  ReplicateVmResult,
} from '../../wire/replication.ts';
import { Bandwidth } from '../backup/bandwidth.ts';
import { bytesOf } from '../backup/changed-chunks.ts';
import { diskProgress } from '../backup/disk-progress.ts';
import { STATE_DIRTY, STATE_ZERO } from '../backup/nbd/protocol.ts';
import type { DiskView, ViewRequest, VmView } from '../backup/view.ts';
import { isZero } from '../backup/zero-bytes.ts';
import { FrameEncoder } from './frames.ts';
import type { ReplicaLink } from './replica-link.ts';
import { resumeRanges, resumes, type SendRange, sendMode, sendRanges } from './send-plan.ts';

/** Bytes read and framed at once: one frame in memory, compressed beside it. */
const READ_RUN_BYTES = 1024 * 1024;

/** The view a cycle reads: its bitmaps named after the point. */
export function replicationView(req: ReplicateVmRequest): ViewRequest {
  return {
    disks: req.disks,
    bitmap: req.bitmap,
    point: req.point,
    // A resumed initial copy asks what changed since its own first view: the bitmap named after
    // the point has recorded since then (sendReplica sends it below the resume offsets).
    previous: resumes(req.previous, req.target.resume) ? req.point : req.previous,
    freeze: req.freeze,
  };
}

export async function sendReplica(
  view: VmView,
  req: ReplicateVmRequest,
  link: ReplicaLink,
  report: (r: ReplicateVmReport) => void,
  signal: AbortSignal,
): Promise<ReplicateVmResult> {
  const takenAt = view.takenAt;
  const encoder = new FrameEncoder({
    replication: req.replication,
    point: req.point,
    base: req.previous,
    takenAt,
    disks: view.disks.map((d) => ({ name: d.name, sizeBytes: d.size })),
  });
  const limiter = new Bandwidth(req.bandwidth);
  const disks: ReplicatedDisk[] = [];
  const cancelled = () => new TernError('cancelled', `replication point ${req.point} was cancelled`);

  async function* stream(): AsyncGenerator<Buffer> {
    yield encoder.start();
    for (const [index, disk] of view.disks.entries())
      for await (const frame of diskFrames(disk, index)) {
        if (signal.aborted) throw cancelled();
        yield frame;
        await limiter.after(frame.length, signal);
      }
    if (signal.aborted) throw cancelled();
    yield encoder.trailer({ consistency: view.consistency, consistencyNote: view.consistencyNote });
  }

  async function* diskFrames(disk: DiskView, index: number): AsyncGenerator<Buffer> {
    const mode = sendMode({
      previous: req.previous,
      size: disk.size,
      format: disk.format,
      bitmapDistrust: disk.bitmapDistrust,
    });
    if (mode.mode === 'full' && mode.reason)
      report({ type: 'log', message: `${disk.name}: sent whole: ${mode.reason}` });
    // Only an initial copy resumes: a later point's overlay starts empty every time.
    let from = req.previous === null ? (req.target.resume.find((r) => r.disk === disk.name)?.offset ?? 0) : 0;
    if (from > 0 && disk.bitmapDistrust !== null) {
      report({
        type: 'log',
        message: `${disk.name}: not resumed, sent whole: what changed since the interrupted copy is unknown (${disk.bitmapDistrust})`,
      });
      from = 0;
    }
    const extents = mode.mode === 'incremental' ? await disk.dirty() : await disk.allocation();
    let ranges: SendRange[];
    if (from > 0) {
      report({
        type: 'log',
        message: `${disk.name}: resumed at ${from} bytes, with what changed below since the interrupted copy`,
      });
      ranges = resumeRanges(await disk.dirty(), extents, from, READ_RUN_BYTES);
    } else ranges = sendRanges(extents, mode.mode, from, READ_RUN_BYTES);
    const totalBytes = ranges.reduce((sum, r) => sum + (r.zero ? 0 : r.length), 0);
    const counts = { read: 0, sent: 0 };
    const progress = diskProgress(report, disk.name, totalBytes, () => ({
      doneBytes: counts.read,
      writtenBytes: counts.sent,
      rateBytes: counts.sent,
    }));
    progress(true);
    const out = (frame: Buffer) => {
      counts.sent += frame.length;
      return frame;
    };
    for (const r of ranges) {
      if (r.zero) {
        yield out(encoder.zeroes(index, r.offset, r.length));
        continue;
      }
      const data = await disk.read(r.offset, r.length);
      if (data.length !== r.length)
        throw new TernError(
          'storage_error',
          `${disk.name}: read ${data.length} bytes at ${r.offset}, not ${r.length}`,
        );
      counts.read += r.length;
      yield out(
        isZero(data) ? encoder.zeroes(index, r.offset, r.length) : encoder.data(index, r.offset, data),
      );
      progress();
    }
    yield out(encoder.endDisk(index));
    progress(true);
    disks.push({
      name: disk.name,
      sizeBytes: disk.size,
      mode: mode.mode,
      fullReason: mode.mode === 'full' ? mode.reason : null,
      dirtyBytes: bytesOf(extents, (f) =>
        mode.mode === 'incremental' ? (f & STATE_DIRTY) !== 0 : (f & STATE_ZERO) === 0,
      ),
      readBytes: counts.read,
      sentBytes: counts.sent,
    });
  }

  const answer = await link(req.target, stream(), signal);
  if (answer.point !== req.point || answer.sha256 !== encoder.sha256)
    throw new TernError(
      'protocol_error',
      `the replica's host committed point ${answer.point} with digest ${answer.sha256}, this host sent ${req.point} with ${encoder.sha256 ?? 'no end'}`,
    );
  return {
    point: req.point,
    takenAt,
    consistency: view.consistency,
    consistencyNote: view.consistencyNote,
    disks,
    sha256: answer.sha256,
  };
}
