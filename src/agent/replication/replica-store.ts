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
import type { TSchema } from 'typebox';
import { writeFileAtomic } from '../../backup/datastore/atomic-file.ts';
import { TernError } from '../../errors.ts';
import type {
  AdoptPointRequest,
  LendPointRequest,
  PrepareReceiveReply,
  PrepareReceiveRequest,
  ReplicaStatus,
  ResumeAt,
} from '../../wire/replication.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { tool } from '../storage/volumes.ts';
import {
  afterDrop,
  childOf,
  emptyPoints,
  type PendingFile,
  PendingFile as PendingSchema,
  type PointsFile,
  PointsFile as PointsSchema,
  parseStored,
  planPrepare,
  planPrune,
} from './replica-state.ts';

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
const TEMP = '.partial';

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
      const { state, pending } = await this.#load(dir);
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
        const { pending } = await this.#load(dir);
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
        const { state } = await this.#load(r.dir);
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
    return this.#one(replication, async () => this.#status(pool, replication));
  }

  /** Keeps the points of `keep` (and those a pin freezes), merging the others away. */
  prune(replication: string, pool: string, keep: readonly string[]): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'prune');
      const dir = this.#dir(pool, replication);
      let { state } = await this.#load(dir);
      const { drop } = planPrune(state, keep);
      for (const id of drop) {
        state = { ...state, merging: { drop: id } };
        await writeJson(path.join(dir, 'points.json'), state);
        state = await finishMerge(dir, state);
      }
      return this.#status(pool, replication);
    });
  }

  /** Volumes standing on point `point` at the given places; the point is pinned while they exist. */
  lend(replication: string, point: string, req: LendPointRequest): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      const dir = this.#dir(req.pool, replication);
      const { state } = await this.#load(dir);
      const p = state.points.find((x) => x.id === point);
      if (!p) throw new TernError('not_found', `replication ${replication} has no recovery point ${point}`);
      const targets = req.disks.map((d) => {
        if (!p.disks.some((x) => x.name === d.name))
          throw new TernError('invalid_request', `recovery point ${point} has no disk ${d.name}`);
        const file = resolveVolume(this.#pools, d.target);
        // A prepare sweeps the replica's directory of files no point names.
        if (file.startsWith(dir + path.sep))
          throw new TernError(
            'invalid_request',
            `volume ${d.target.path} lies inside the replica's own directory`,
          );
        const mine = state.pins.some((pin) => pin.point === point && sameRef(pin.volume, d.target));
        if (fs.existsSync(file) && !mine)
          throw new TernError('conflict', `volume ${d.target.pool}:${d.target.path} exists`);
        return { ...d, file };
      });
      // The pins first: a volume never stands on a point that a prune could merge away.
      const pins = [
        ...state.pins,
        ...targets
          .filter((t) => !state.pins.some((pin) => sameRef(pin.volume, t.target)))
          .map((t) => ({ point, volume: t.target })),
      ];
      await writeJson(path.join(dir, 'points.json'), { ...state, pins });
      for (const t of targets) {
        if (fs.existsSync(t.file)) continue;
        fs.mkdirSync(path.dirname(t.file), { recursive: true });
        const backing = path.relative(path.dirname(t.file), pointFile(dir, t.name, point));
        const size = p.disks.find((x) => x.name === t.name)!.sizeBytes;
        await tool(
          'qemu-img',
          ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', t.file + TEMP, String(size)],
          `lending ${t.name} of point ${point}`,
        );
        // Before the overlay takes its name: no volume of this lend is ever without it.
        if (req.bitmap)
          await tool(
            'qemu-img',
            ['bitmap', '--add', '-g', '65536', t.file + TEMP, req.bitmap],
            `adding dirty bitmap ${req.bitmap} to ${t.name} of point ${point}`,
          );
        fs.renameSync(t.file + TEMP, t.file);
      }
      return this.#status(req.pool, replication);
    });
  }

  /**
   * Takes volumes of the pool in as the replica's first point: each point file is an empty
   * overlay backed by the volume. Referenced, not moved: a volume that is itself an overlay
   * (on a template's image, say) keeps its own backing chain valid, and a kill at any instant
   * never leaves the volume where a sweep of the replica's directory would remove it (a sweep
   * takes only the overlay, made again by the next call). The volume is never written since:
   * merges write into the overlay. Done again, it answers as done.
   */
  adopt(replication: string, req: AdoptPointRequest): Promise<ReplicaStatus> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'adopt a point');
      const dir = this.#dir(req.pool, replication);
      fs.mkdirSync(dir, { recursive: true });
      const { state, pending } = await this.#load(dir);
      const same = state.points.find((p) => p.id === req.point);
      if (same && state.points.length === 1) return this.#status(req.pool, replication);
      if (state.points.length > 0 || pending)
        throw new TernError(
          'conflict',
          `replication ${replication} has recovery points or a cycle under way already: only a replica with none adopts a point`,
        );
      if (new Set(req.disks.map((d) => d.name)).size !== req.disks.length)
        throw new TernError('invalid_request', 'two disks under one name');
      const disks = await Promise.all(req.disks.map((d) => this.#adoptable(req.pool, d)));
      for (const d of disks) {
        const file = pointFile(dir, d.name, req.point);
        fs.mkdirSync(path.dirname(file), { recursive: true });
        const backing = path.relative(path.dirname(file), d.file);
        await tool(
          'qemu-img',
          ['create', '-q', '-f', 'qcow2', '-b', backing, '-F', d.format, file + TEMP, String(d.sizeBytes)],
          `adopting ${d.volume.pool}:${d.volume.path} as ${d.name} of point ${req.point}`,
        );
        fs.renameSync(file + TEMP, file);
      }
      const next: PointsFile = {
        ...state,
        points: [
          {
            id: req.point,
            takenAt: req.takenAt,
            consistency: req.consistency,
            // Whole as far as the replica's points go: its chain leaves them for the volume.
            disks: req.disks.map((d) => ({ name: d.name, sizeBytes: d.sizeBytes, backing: null })),
          },
        ],
      };
      await writeJson(path.join(dir, 'points.json'), next);
      return this.#status(req.pool, replication);
    });
  }

  /** A volume that may become a point's backing file: in the pool, its size, no QEMU holding it. */
  async #adoptable(pool: string, d: AdoptPointRequest['disks'][number]) {
    if (d.volume.pool !== pool)
      throw new TernError(
        'invalid_request',
        `volume ${d.volume.pool}:${d.volume.path} is not in pool ${pool}, which keeps the replica`,
      );
    const file = resolveVolume(this.#pools, d.volume);
    if (!fs.existsSync(file))
      throw new TernError('not_found', `volume ${d.volume.pool}:${d.volume.path} does not exist`);
    // Without --force-share: refused while a QEMU holds the image (it could still write it).
    const info = await tool('qemu-img', ['info', '--output=json', file], `inspecting ${d.volume.path}`).catch(
      (err: TernError) => {
        throw new TernError(
          'conflict',
          `volume ${d.volume.pool}:${d.volume.path} cannot be adopted: ${err.message} (a QEMU holds it open?)`,
        );
      },
    );
    const facts = JSON.parse(info) as { format: string; 'virtual-size': number };
    if (facts['virtual-size'] !== d.sizeBytes)
      throw new TernError(
        'conflict',
        `volume ${d.volume.pool}:${d.volume.path} holds ${facts['virtual-size']} bytes, not the point's ${d.sizeBytes}`,
      );
    return { ...d, file, format: facts.format };
  }

  /** Removes the whole replica; refused while a volume stands on one of its points. */
  remove(replication: string, pool: string): Promise<void> {
    return this.#one(replication, async () => {
      this.#notReceiving(replication, 'remove the replica');
      const dir = this.#dir(pool, replication);
      if (!fs.existsSync(dir)) return;
      const { state } = await this.#load(dir);
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

  async #status(pool: string, replication: string): Promise<ReplicaStatus> {
    const dir = this.#dir(pool, replication);
    const { state, pending } = fs.existsSync(dir)
      ? await this.#load(dir)
      : { state: emptyPoints, pending: null };
    const present = new Set<string>();
    const points: ReplicaStatus['points'] = [];
    for (const p of state.points) {
      // A point is there when each of its disks' files is, and each file's base point is.
      const whole = p.disks.every(
        (d) => fs.existsSync(pointFile(dir, d.name, p.id)) && (d.backing === null || present.has(d.backing)),
      );
      if (!whole) continue;
      present.add(p.id);
      points.push({
        id: p.id,
        takenAt: p.takenAt,
        consistency: p.consistency,
        disks: p.disks.map((d) => ({
          name: d.name,
          sizeBytes: d.sizeBytes,
          volume: { pool, path: `replicas/${replication}/${d.name}/${p.id}.qcow2` },
        })),
        pinnedBy: state.pins.filter((pin) => pin.point === p.id).map((pin) => pin.volume),
      });
    }
    return {
      pool,
      points,
      pending: pending ? { point: pending.point, resume: pending.resume } : null,
      bytes: diskBytes(dir),
    };
  }

  /** The books of a replica, repaired: a merge a kill interrupted finished, stale entries gone. */
  async #load(dir: string): Promise<{ state: PointsFile; pending: PendingFile | null }> {
    const pointsFile = path.join(dir, 'points.json');
    const pendingFile = path.join(dir, 'pending.json');
    let state = readJson<PointsFile>(pointsFile, PointsSchema) ?? emptyPoints;
    let pending: PendingFile | null;
    try {
      pending = readJson<PendingFile>(pendingFile, PendingSchema);
    } catch {
      // Only a cycle not committed is lost with it: it is prepared again, its files swept.
      pending = null;
    }
    if (state.merging) state = await finishMerge(dir, state);
    // Committed, and killed before pending.json went: its files are the point's now.
    if (pending && state.points.some((p) => p.id === pending!.point)) {
      fs.rmSync(pendingFile, { force: true });
      pending = null;
    }
    const pins = state.pins.filter((pin) => {
      try {
        return fs.existsSync(resolveVolume(this.#pools, pin.volume));
      } catch {
        return false; // its pool is gone from this host
      }
    });
    if (pins.length !== state.pins.length) {
      state = { ...state, pins };
      await writeJson(pointsFile, state);
    }
    return { state, pending };
  }

  #dir(pool: string, replication: string): string {
    return resolveVolume(this.#pools, { pool, path: `replicas/${replication}` });
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

export function pointFile(dir: string, disk: string, point: string): string {
  return path.join(dir, disk, `${point}.qcow2`);
}

/**
 * Finishes the journalled merge of point `state.merging.drop`: per disk, its child's clusters
 * are committed into its file (the child's view is intact at every instant: its own clusters
 * stay), which is then renamed over the child's name, so whatever stands on the child still
 * finds it; a disk no point stands on just goes. Each step can run again after a kill.
 */
export async function finishMerge(dir: string, state: PointsFile): Promise<PointsFile> {
  const drop = state.merging?.drop;
  if (!drop) return state;
  const gone = state.points.find((p) => p.id === drop);
  for (const d of gone?.disks ?? []) {
    const file = pointFile(dir, d.name, drop);
    if (!fs.existsSync(file)) continue; // renamed already
    const child = childOf(state, drop, d.name);
    if (child) {
      const top = pointFile(dir, d.name, child.id);
      await tool(
        'qemu-img',
        ['commit', '-q', '-d', '-f', 'qcow2', top],
        `merging point ${drop} into ${child.id}`,
      );
      fs.renameSync(file, top);
    } else fs.rmSync(file, { force: true });
  }
  const next = afterDrop(state, drop);
  await writeJson(path.join(dir, 'points.json'), next);
  return next;
}

/** Removes what no committed point (nor a resumed copy) names: files of broken cycles, temporaries. */
function sweep(dir: string, keep: ReadonlySet<string>): void {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      for (const f of fs.readdirSync(full))
        if (!keep.has(path.join(full, f))) fs.rmSync(path.join(full, f), { force: true });
    } else if (entry.name !== 'points.json' && entry.name !== 'pending.json')
      fs.rmSync(full, { force: true });
  }
}

function diskBytes(dir: string): number {
  let bytes = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else bytes += fs.statSync(full).blocks * 512;
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return bytes;
}

function readJson<T>(file: string, schema: TSchema): T | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  return parseStored<T>(schema, text, file);
}

async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, Buffer.from(`${JSON.stringify(value, null, 2)}\n`));
}

function sameRef(a: VolumeRef, b: VolumeRef): boolean {
  return a.pool === b.pool && path.normalize(a.path) === path.normalize(b.path);
}
