/**
 * Receives one recovery point's stream (frames.ts) into the files replica-store.ts prepared:
 * each disk's top file served writable by `qemu-nbd`, written with Tern's NBD client, flushed,
 * and the point committed only once the trailer's chained digest and counts checked out. A
 * stream refused anywhere commits nothing and leaves the older points as they were; an initial
 * copy records, every few MiB and after a flush, how far each disk is whole, so a broken copy
 * resumes there rather than from the start.
 */
import { TernError } from '../../errors.ts';
import type { ReceiveResult, ResumeAt } from '../../wire/replication.ts';
import { NbdClient } from '../backup/nbd/client.ts';
import { type ServedImage, serveImage } from '../backup/qemu-nbd.ts';
import { decodeFrames, type StreamHeader } from './frames.ts';
import type { Receiving, ReplicaStore } from './replica-store.ts';

/** An initial copy records how far it got after about this much data. */
const RESUME_EVERY_BYTES = 8 * 1024 * 1024;
/**
 * A sender silent this long is gone (its host lost without closing the connection): the
 * stream is refused, so the replication is not held as receiving for ever.
 */
export const STREAM_IDLE_MS = 120_000;

/** `body`, refused with a timeout once nothing arrives for `ms`. */
async function* idleBounded(body: AsyncIterable<Uint8Array>, ms: number): AsyncGenerator<Uint8Array> {
  const it = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const silence = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new TernError('timeout', `the replication stream sent nothing for ${ms / 1000} s`)),
          ms,
        );
      });
      const r = await Promise.race([it.next(), silence]).finally(() => clearTimeout(timer));
      if (r.done) return;
      yield r.value;
    }
  } finally {
    // Not awaited: a source stuck in a read must not hold the refusal back.
    void Promise.resolve(it.return?.()).catch(() => {});
  }
}

interface OpenDisk {
  served: ServedImage;
  nbd: NbdClient;
}

/** The stream's header must be the cycle that was prepared, nothing else. */
function checkHeader(h: StreamHeader, r: Receiving): void {
  const p = r.pending;
  const wrong = (what: string) =>
    new TernError(
      'invalid_request',
      `the replication stream is refused: its ${what} is not the prepared cycle's`,
    );
  if (h.replication !== r.replication) throw wrong(`replication (${h.replication})`);
  if (h.point !== p.point) throw wrong(`point (${h.point}, prepared ${p.point})`);
  if (h.base !== p.base) throw wrong(`base (${h.base}, prepared ${p.base})`);
  if (
    h.disks.length !== p.disks.length ||
    h.disks.some((d, i) => d.name !== p.disks[i]!.name || d.sizeBytes !== p.disks[i]!.sizeBytes)
  )
    throw wrong('list of disks');
}

/**
 * Takes the stream of the cycle whose ticket is `ticket` from `body` and commits its point.
 * Throws a TernError saying why when anything is wrong; nothing is committed then.
 */
export async function receivePoint(
  store: ReplicaStore,
  replication: string,
  ticket: string,
  body: AsyncIterable<Uint8Array>,
  options: { idleMs?: number } = {},
): Promise<ReceiveResult> {
  const r = await store.begin(replication, ticket);
  const open = new Map<number, OpenDisk>();
  const initial = r.pending.base === null;
  const resume = new Map<string, number>(r.pending.resume.map((x) => [x.disk, x.offset]));
  const resumedAt = new Map(resume);
  const opened = new Set<number>();
  let header: StreamHeader | null = null;
  let writtenBytes = 0;
  let sinceRecord = 0;
  let committed = false;

  const disk = async (index: number): Promise<OpenDisk> => {
    const have = open.get(index);
    if (have) return have;
    const d = header!.disks[index]!;
    const served = await serveImage(r.files.get(d.name)!, { format: 'qcow2', readOnly: false });
    let nbd: NbdClient;
    try {
      nbd = await NbdClient.connect({ path: served.socket }, { exportName: served.exportName });
    } catch (err) {
      await served.close();
      throw err;
    }
    const o = { served, nbd };
    open.set(index, o);
    opened.add(index);
    // A resumed copy's file may hold data written past its recorded offset by the broken
    // stream; the new one only sends what is allocated, so what lies past it starts as zeroes.
    const from = resumedAt.get(d.name) ?? 0;
    if (initial && from > 0 && from < d.sizeBytes) await nbd.writeZeroes(from, d.sizeBytes - from);
    return o;
  };
  const close = async (index: number) => {
    const o = open.get(index);
    if (!o) return;
    open.delete(index);
    await o.nbd.disconnect();
    await o.served.close();
  };
  let writing: Promise<void> | null = null;
  const settle = async () => {
    const w = writing;
    writing = null;
    await w;
  };
  const record = async () => {
    for (const o of open.values()) await o.nbd.flush();
    const at: ResumeAt[] = r.pending.disks.map((d) => ({ disk: d.name, offset: resume.get(d.name) ?? 0 }));
    await store.recordResume(r, at);
    sinceRecord = 0;
  };

  try {
    for await (const f of decodeFrames(idleBounded(body, options.idleMs ?? STREAM_IDLE_MS))) {
      if (f.type === 'header') {
        checkHeader(f.header, r);
        header = f.header;
      } else if (f.type === 'data' || f.type === 'zeroes') {
        await settle();
        const name = header!.disks[f.disk]!.name;
        const { nbd } = await disk(f.disk);
        const length = f.type === 'data' ? f.data.length : f.length;
        // Written while the next frame is read and checked; what it covers counts once written.
        writing = (
          f.type === 'data' ? nbd.write(f.offset, f.data) : nbd.writeZeroes(f.offset, f.length)
        ).then(() => {
          writtenBytes += f.type === 'data' ? length : 0;
          resume.set(name, Math.max(resume.get(name) ?? 0, f.offset + length));
          sinceRecord += length;
        });
        writing.catch(() => {}); // awaited by settle(); until then a failure must not go unhandled
        if (initial && sinceRecord + length >= RESUME_EVERY_BYTES) {
          await settle();
          await record();
        }
      } else if (f.type === 'end') {
        await settle();
        const d = header!.disks[f.disk]!;
        if (initial && (resumedAt.get(d.name) ?? 0) > 0 && !opened.has(f.disk)) await disk(f.disk);
        const o = open.get(f.disk);
        if (o) {
          await o.nbd.flush();
          await close(f.disk);
        }
        if (initial) {
          resume.set(d.name, d.sizeBytes);
          await record();
        }
      } else {
        // Every disk ended (the decoder makes sure), so each was flushed and closed.
        await store.commit(r, { takenAt: header!.takenAt, consistency: f.trailer.consistency });
        committed = true;
        return {
          point: r.pending.point,
          takenAt: header!.takenAt,
          consistency: f.trailer.consistency,
          writtenBytes,
          streamBytes: f.streamBytes,
          sha256: f.sha256,
        };
      }
    }
    throw new TernError('invalid_request', 'the replication stream is refused: it ended without a trailer');
  } finally {
    await settle().catch(() => {});
    for (const index of [...open.keys()]) await close(index).catch(() => {});
    if (!committed) store.abandon(r);
  }
}
