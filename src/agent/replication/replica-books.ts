/**
 * A replica's files and books in its pool (the layout is in replica-store.ts): where they are,
 * read back repaired (what a kill left finished or dropped), told as a status, a journalled
 * merge finished, leftovers swept, the books written whole or not at all.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { TSchema } from 'typebox';
import { writeFileAtomic } from '../../backup/datastore/atomic-file.ts';
import type { ReplicaStatus } from '../../wire/replication.ts';
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
} from './replica-state.ts';

/** A new file is made under this suffix, then renamed: a file of its name is whole. */
export const TEMP = '.partial';

export function replicaDir(pools: Pools, pool: string, replication: string): string {
  return resolveVolume(pools, { pool, path: `replicas/${replication}` });
}

export async function replicaStatus(pools: Pools, pool: string, replication: string): Promise<ReplicaStatus> {
  const dir = replicaDir(pools, pool, replication);
  const { state, pending } = fs.existsSync(dir)
    ? await loadBooks(pools, dir)
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
export async function loadBooks(
  pools: Pools,
  dir: string,
): Promise<{ state: PointsFile; pending: PendingFile | null }> {
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
      return fs.existsSync(resolveVolume(pools, pin.volume));
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
export function sweep(dir: string, keep: ReadonlySet<string>): void {
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

export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFileAtomic(file, Buffer.from(`${JSON.stringify(value, null, 2)}\n`));
}
