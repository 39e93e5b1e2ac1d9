/**
 * What a replica's `points.json` and `pending.json` hold, and the decisions over them (pure):
 * whether a prepare resumes or starts afresh, which points a prune drops and in what way, and
 * what the books say once a point is merged away. replica-store.ts applies them to the files.
 *
 * Per disk, each point's file is a qcow2 backed by the file of the point it was received on
 * (`backing`), or whole (`backing: null`: the initial copy, a resync, a disk new in that point).
 */
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { TernError } from '../../errors.ts';
import { BackupName } from '../../wire/backup.ts';
import { Timestamp } from '../../wire/common.ts';
import { Consistency, PointId, ResumeAt } from '../../wire/replication.ts';
import { VolumeRef } from '../../wire/vm.ts';

export const StoredPoint = Type.Object({
  id: PointId,
  takenAt: Timestamp,
  consistency: Consistency,
  disks: Type.Array(
    Type.Object({
      name: BackupName,
      sizeBytes: Type.Integer({ minimum: 1 }),
      backing: Type.Union([PointId, Type.Null()]),
    }),
  ),
});
export type StoredPoint = Static<typeof StoredPoint>;

export const Pin = Type.Object({ point: PointId, volume: VolumeRef });
export type Pin = Static<typeof Pin>;

/** points.json: the committed points (oldest first), the pins, and a merge under way. */
export const PointsFile = Type.Object({
  points: Type.Array(StoredPoint),
  pins: Type.Array(Pin),
  /** The journal: point `drop` is being merged into the points standing on it. */
  merging: Type.Union([Type.Object({ drop: PointId }), Type.Null()]),
});
export type PointsFile = Static<typeof PointsFile>;

/** pending.json: the cycle prepared and not committed. */
export const PendingFile = Type.Object({
  point: PointId,
  base: Type.Union([PointId, Type.Null()]),
  disks: Type.Array(Type.Object({ name: BackupName, sizeBytes: Type.Integer({ minimum: 1 }) })),
  resume: Type.Array(ResumeAt),
  /** SHA-256 (hex) of the one-time ticket; null once a stream presented it. */
  ticketSha256: Type.Union([Type.String({ pattern: '^[0-9a-f]{64}$' }), Type.Null()]),
  ticketExpires: Timestamp,
});
export type PendingFile = Static<typeof PendingFile>;

export const emptyPoints: PointsFile = { points: [], pins: [], merging: null };

/** A stored file's JSON, checked: a hand-edited or damaged file is said so, never guessed at. */
export function parseStored<T>(schema: TSchema, text: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TernError('storage_error', `${what} is not JSON`);
  }
  if (!Value.Check(schema, value)) throw new TernError('storage_error', `${what} is out of shape`);
  return value as T;
}

export interface PrepareAsk {
  point: string;
  base: string | null;
  disks: readonly { name: string; sizeBytes: number }[];
}

/**
 * What a prepare does with what is there: refuse it, resume an interrupted initial copy of the
 * same point (keeping its offsets), or start afresh (removing the leftovers of any other cycle).
 */
export function planPrepare(
  state: PointsFile,
  pending: PendingFile | null,
  ask: PrepareAsk,
): { resume: PendingFile['resume'] | null } {
  if (new Set(ask.disks.map((d) => d.name)).size !== ask.disks.length)
    throw new TernError('invalid_request', 'a disk is named twice');
  const newest = state.points.at(-1);
  if (state.points.some((p) => p.id === ask.point))
    throw new TernError('conflict', `recovery point ${ask.point} is committed already`);
  if (newest && ask.point <= newest.id)
    throw new TernError(
      'conflict',
      `recovery point ${ask.point} is not newer than the newest one, ${newest.id}`,
    );
  if (ask.base !== null && ask.base !== newest?.id)
    throw new TernError(
      'conflict',
      newest
        ? `a cycle goes on the newest recovery point, ${newest.id}, not on ${ask.base}`
        : `the replica has no recovery point ${ask.base}: it needs an initial copy`,
    );
  const same =
    pending !== null &&
    ask.base === null &&
    pending.base === null &&
    pending.point === ask.point &&
    pending.disks.length === ask.disks.length &&
    pending.disks.every((d, i) => d.name === ask.disks[i]!.name && d.sizeBytes === ask.disks[i]!.sizeBytes);
  return { resume: same ? pending.resume : null };
}

/** Per disk of a point, the point whose file stands on it there (at most one: cycles go on the newest). */
export function childOf(state: PointsFile, id: string, disk: string): StoredPoint | null {
  return state.points.find((p) => p.disks.some((d) => d.name === disk && d.backing === id)) ?? null;
}

/** The points a pin freezes: its own and every older one (their files are its chain). */
function frozenUpTo(state: PointsFile): string | null {
  let newest: string | null = null;
  for (const pin of state.pins) if (newest === null || pin.point > newest) newest = pin.point;
  return newest;
}

/**
 * Which points a prune drops, oldest first: those not kept, except the ones a pin freezes.
 * Dropping the newest point is refused: every cycle goes on it.
 */
export function planPrune(state: PointsFile, keep: readonly string[]): { drop: string[]; held: string[] } {
  const newest = state.points.at(-1);
  if (newest && !keep.includes(newest.id))
    throw new TernError('invalid_request', `the newest recovery point, ${newest.id}, is always kept`);
  const frozen = frozenUpTo(state);
  const drop: string[] = [];
  const held: string[] = [];
  for (const p of state.points) {
    if (keep.includes(p.id)) continue;
    if (frozen !== null && p.id <= frozen) held.push(p.id);
    else drop.push(p.id);
  }
  return { drop, held };
}

/** The books once point `id` is merged away: its children stand on what it stood on. */
export function afterDrop(state: PointsFile, id: string): PointsFile {
  const gone = state.points.find((p) => p.id === id);
  if (!gone) return { ...state, merging: null };
  const points = state.points
    .filter((p) => p.id !== id)
    .map((p) => ({
      ...p,
      disks: p.disks.map((d) =>
        d.backing === id ? { ...d, backing: gone.disks.find((g) => g.name === d.name)?.backing ?? null } : d,
      ),
    }));
  return { ...state, points, merging: null };
}
