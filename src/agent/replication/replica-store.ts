/**
 * A replica's recovery points on this host, as files in a storage pool (docs/replication.md):
 *
 *   replicas/<replication>/points.json           committed points, pins, the merge journal
 *   replicas/<replication>/pending.json          the cycle prepared and not committed
 *   replicas/<replication>/<disk>/<point>.qcow2  a point's disk: whole, or an overlay backed
 *                                                (by a relative name) by its base point's file
 *
 * Every change is whole or not at all: the JSON files are written aside and renamed, a new
 * file is made under a temporary name, a point is committed by rewriting points.json, and a
 * merge is journalled there first. Each call starts by repairing what a kill left (a merge half
 * done, a pending cycle already committed, pins of volumes that are gone), so the next call
 * after a SIGKILL at any instant finds a state it can tell truly. Calls on one replication go
 * one at a time; a stream being received keeps prepare, prune and remove away.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type {
  AdoptPointRequest,
  LendPointRequest,
  PrepareReceiveReply,
  PrepareReceiveRequest,
  ReplicaStatus,
  ResumeAt,
} from '../../wire/replication.ts';
import type { Pools } from '../storage/pools.ts';
import { tool } from '../storage/volumes.ts';
import {
  finishMerge,
  loadBooks,
  pointFile,
  replicaDir,
  replicaStatus,
  sweep,
  TEMP,
  writeJson,
} from './replica-books.ts';
import { adoptPoint, lendPoint } from './replica-lend.ts';
import { type PendingFile, type PointsFile, planPrepare, planPrune } from './replica-state.ts';

/** A ticket is good for this long after its prepare. */
export const TICKET_TTL_MS = 3600_000;

/** A cycle whose stream is being received: where it goes and what was prepared. */
export interface Receiving {
  replication: string;
  pool: string;
  dir: string;
  pending: PendingFile;
  /** The file each disk's data is written into. */
  files: Map<string, string>;
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

export class ReplicaStore {
  readonly #pools: Pools;
  readonly #queues = new Map<string, Promise<unknown>>();
  readonly #receiving = new Set<string>();

  constructor(pools: Pools) {
    this.#pools = pools;
  }

  /** Prepares point `req.point` on `req.base` and gives the ticket its stream must present. */
  prepare(replication: string, req: PrepareReceiveRequest): Promise<PrepareReceiveReply> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'prepare another cycle');
      const dir = this.#dir(req.pool, replication);
      fs.mkdirSync(dir, { recursive: true });
      const { state, pending } = await loadBooks(this.#pools, dir);
      const { resume: kept } = planPrepare(state, pending, req);
      const keepFiles = new Set(
        state.points.flatMap((p) => p.disks.map((d) => pointFile(dir, d.name, p.id))),
      );
      if (kept) for (const d of req.disks) keepFiles.add(pointFile(dir, d.name, req.point));
      sweep(dir, keepFiles);
      const resume: ResumeAt[] = req.disks.map((d) => {
        const at = kept?.find((r) => r.disk === d.name)?.offset ?? 0;
        return { disk: d.name, offset: fs.existsSync(pointFile(dir, d.name, req.point)) ? at : 0 };
      });
      const ticket = randomBytes(32).toString('base64url');
      const next: PendingFile = {
        point: req.point,
        base: req.base,
        disks: req.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes })),
        resume,
        ticketSha256: sha256(ticket),
        ticketExpires: new Date(Date.now() + TICKET_TTL_MS).toISOString(),
      };
      // The books first: files a kill leaves behind are then known leftovers, swept next time.
      await writeJson(path.join(dir, 'pending.json'), next);
      const base = state.points.find((p) => p.id === req.base);
      for (const d of req.disks) {
        const file = pointFile(dir, d.name, req.point);
        if (fs.existsSync(file)) continue;
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const args = ['create', '-q', '-f', 'qcow2'];
        if (base?.disks.some((b) => b.name === d.name)) args.push('-b', `${base.id}.qcow2`, '-F', 'qcow2');
        await tool(
          'qemu-img',
          [...args, file + TEMP, String(d.sizeBytes)],
          `creating ${d.name} of point ${req.point}`,
        );
        fs.renameSync(file + TEMP, file);
      }
      return { ticket, resume };
    });
  }

  /**
   * Takes the ticket of a stream (once: it is spent here) and marks the replication as
   * receiving; `end` must follow, by `commit` or `abandon`.
   */
  begin(replication: string, ticket: string): Promise<Receiving> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'receive a second stream');
      const presented = Buffer.from(sha256(ticket), 'hex');
      for (const pool of Object.keys(this.#pools)) {
        const dir = this.#dir(pool, replication);
        if (!fs.existsSync(path.join(dir, 'pending.json'))) continue;
        const { pending } = await loadBooks(this.#pools, dir);
        if (!pending?.ticketSha256) continue;
        if (!timingSafeEqual(Buffer.from(pending.ticketSha256, 'hex'), presented)) continue;
        if (Date.parse(pending.ticketExpires) < Date.now())
          throw new TernError(
            'unauthorized',
            `the ticket for point ${pending.point} expired: prepare the cycle again`,
          );
        const spent = { ...pending, ticketSha256: null };
        await writeJson(path.join(dir, 'pending.json'), spent);
        this.#receiving.add(replication);
        const files = new Map(pending.disks.map((d) => [d.name, pointFile(dir, d.name, pending.point)]));
        for (const [name, file] of files)
          if (!fs.existsSync(file)) {
            this.#receiving.delete(replication);
            throw new TernError(
              'conflict',
              `disk ${name} of point ${pending.point} is gone: prepare the cycle again`,
            );
          }
        return { replication, pool, dir, pending: spent, files };
      }
      throw new TernError(
        'unauthorized',
        `no cycle of replication ${replication} awaits a stream with this ticket (wrong, spent, or never issued)`,
      );
    });
  }

  /** Records where an interrupted initial copy may resume (the data below is flushed). */
  async recordResume(r: Receiving, resume: ResumeAt[]): Promise<void> {
    r.pending = { ...r.pending, resume };
    await writeJson(path.join(r.dir, 'pending.json'), r.pending);
  }

  /** Commits the received point: from here on it is one of the replica's points. */
  commit(r: Receiving, point: { takenAt: string; consistency: 'application' | 'crash' }): Promise<void> {
    return this.#one(r.replication, async () => {
      try {
        const { state } = await loadBooks(this.#pools, r.dir);
        const base = state.points.find((p) => p.id === r.pending.base);
        const next: PointsFile = {
          ...state,
          points: [
            ...state.points,
            {
              id: r.pending.point,
              takenAt: point.takenAt,
              consistency: point.consistency,
              disks: r.pending.disks.map((d) => ({
                name: d.name,
                sizeBytes: d.sizeBytes,
                backing: base?.disks.some((b) => b.name === d.name) ? base.id : null,
              })),
            },
          ],
        };
        await writeJson(path.join(r.dir, 'points.json'), next);
        fs.rmSync(path.join(r.dir, 'pending.json'), { force: true });
      } finally {
        this.#receiving.delete(r.replication);
      }
    });
  }

  /** A stream that ended without a commit: its files stay until the next prepare decides. */
  abandon(r: Receiving): void {
    this.#receiving.delete(r.replication);
  }

  status(replication: string, pool: string): Promise<ReplicaStatus> {
    return this.#one(replication, async () => replicaStatus(this.#pools, pool, replication));
  }

  /** Keeps the points of `keep` (and those a pin freezes), merging the others away. */
  prune(replication: string, pool: string, keep: readonly string[]): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'prune');
      const dir = this.#dir(pool, replication);
      let { state } = await loadBooks(this.#pools, dir);
      const { drop } = planPrune(state, keep);
      for (const id of drop) {
        state = { ...state, merging: { drop: id } };
        await writeJson(path.join(dir, 'points.json'), state);
        state = await finishMerge(dir, state);
      }
      return replicaStatus(this.#pools, pool, replication);
    });
  }

  /** Volumes standing on point `point` at the given places; the point is pinned while they exist. */
  lend(replication: string, point: string, req: LendPointRequest): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      await lendPoint(this.#pools, replication, point, req);
      return replicaStatus(this.#pools, req.pool, replication);
    });
  }

  /** Takes volumes of the pool in as the replica's first point (replica-lend.ts). */
  adopt(replication: string, req: AdoptPointRequest): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'adopt a point');
      await adoptPoint(this.#pools, replication, req);
      return replicaStatus(this.#pools, req.pool, replication);
    });
  }

  /** Removes the whole replica; refused while a volume stands on one of its points. */
  remove(replication: string, pool: string): Promise<void> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'remove the replica');
      const dir = this.#dir(pool, replication);
      if (!fs.existsSync(dir)) return;
      const { state } = await loadBooks(this.#pools, dir);
      if (state.pins.length > 0)
        throw new TernError(
          'conflict',
          `volumes stand on recovery points of replication ${replication}: ${state.pins
            .map((p) => `${p.volume.pool}:${p.volume.path} (${p.point})`)
            .join(', ')}`,
          { pinnedBy: state.pins.map((p) => p.volume) },
        );
      // The books first: a kill in the middle leaves files no point names, which a retry removes.
      fs.rmSync(path.join(dir, 'points.json'), { force: true });
      fs.rmSync(path.join(dir, 'pending.json'), { force: true });
      fs.rmSync(dir, { recursive: true, force: true });
    });
  }

  #dir(pool: string, replication: string): string {
    return replicaDir(this.#pools, pool, replication);
  }

  #notReceiving(replication: string, what: string): void {
    if (this.#receiving.has(replication))
      throw new TernError(
        'locked',
        `a stream of replication ${replication} is being received: cannot ${what} now`,
      );
  }

  /** Runs `fn` after every earlier call on the same replication has ended. */
  #one<T>(replication: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#queues.get(replication) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => {});
    this.#queues.set(replication, tail);
    void tail.then(() => {
      if (this.#queues.get(replication) === tail) this.#queues.delete(replication);
    });
    return run;
  }
}
