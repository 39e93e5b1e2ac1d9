/**
 * A replica's points put to use by other volumes (docs/replication.md, Failover): lent (a
 * failover's VM stands on overlays of a point, which stays pinned while they exist) and adopted
 * (reverse replication takes the old primary's volumes in as its first point).
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { AdoptPointRequest, LendPointRequest } from '../../wire/replication.ts';
import type { VolumeRef } from '../../wire/vm.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { tool } from '../storage/volumes.ts';
import { loadBooks, pointFile, replicaDir, TEMP, writeJson } from './replica-books.ts';
import type { PointsFile } from './replica-state.ts';

/** Volumes standing on point `point` at the given places; the point is pinned while they exist. */
export async function lendPoint(
  pools: Pools,
  replication: string,
  point: string,
  req: LendPointRequest,
): Promise<void> {
  const dir = replicaDir(pools, req.pool, replication);
  const { state } = await loadBooks(pools, dir);
  const p = state.points.find((x) => x.id === point);
  if (!p) throw new TernError('not_found', `replication ${replication} has no recovery point ${point}`);
  const targets = req.disks.map((d) => {
    if (!p.disks.some((x) => x.name === d.name))
      throw new TernError('invalid_request', `recovery point ${point} has no disk ${d.name}`);
    const file = resolveVolume(pools, d.target);
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
}

/**
 * Takes volumes of the pool in as the replica's first point: each point file is an empty
 * overlay backed by the volume. Referenced, not moved: a volume that is itself an overlay
 * (on a template's image, say) keeps its own backing chain valid, and a kill at any instant
 * never leaves the volume where a sweep of the replica's directory would remove it (a sweep
 * takes only the overlay, made again by the next call). The volume is never written since:
 * merges write into the overlay. Done again, it answers as done.
 */
export async function adoptPoint(pools: Pools, replication: string, req: AdoptPointRequest): Promise<void> {
  const dir = replicaDir(pools, req.pool, replication);
  fs.mkdirSync(dir, { recursive: true });
  const { state, pending } = await loadBooks(pools, dir);
  const same = state.points.find((p) => p.id === req.point);
  if (same && state.points.length === 1) return;
  if (state.points.length > 0 || pending)
    throw new TernError(
      'conflict',
      `replication ${replication} has recovery points or a cycle under way already: only a replica with none adopts a point`,
    );
  if (new Set(req.disks.map((d) => d.name)).size !== req.disks.length)
    throw new TernError('invalid_request', 'two disks under one name');
  const disks = await Promise.all(req.disks.map((d) => adoptable(pools, req.pool, d)));
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
}

/** A volume that may become a point's backing file: in the pool, its size, no QEMU holding it. */
async function adoptable(pools: Pools, pool: string, d: AdoptPointRequest['disks'][number]) {
  if (d.volume.pool !== pool)
    throw new TernError(
      'invalid_request',
      `volume ${d.volume.pool}:${d.volume.path} is not in pool ${pool}, which keeps the replica`,
    );
  const file = resolveVolume(pools, d.volume);
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

function sameRef(a: VolumeRef, b: VolumeRef): boolean {
  return a.pool === b.pool && path.normalize(a.path) === path.normalize(b.path);
}
