/**
 * The recovery points the manager recorded for a relationship: the committed points of its
 * replica, as cycles reported them or as the replica's keeper was found to hold them
 * (agree.ts), and forgotten when the keeper no longer holds them.
 */
import type { RecoveryPointInfo } from '../../wire/api/replication.ts';
import type { ReplicaPoint, ReplicatedDisk, ReplicateVmResult } from '../../wire/replication.ts';
import { type Db, now } from '../db/database.ts';
import type { RecoveryPointTable, ReplicationTable } from '../db/schema.ts';
import { pointPeriodMs } from './intervals.ts';
import { markPoints } from './points.ts';

export class RecoveryPoints {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /** The committed points the manager recorded, oldest first. */
  async of(replicationId: string): Promise<RecoveryPointTable[]> {
    return this.#db
      .selectFrom('recoveryPoints')
      .selectAll()
      .where('replicationId', '=', replicationId)
      .orderBy('id')
      .execute();
  }

  /** A point the replica's host committed in a cycle, as the primary's host reported it. */
  async record(replicationId: string, r: ReplicateVmResult, taskId: string): Promise<void> {
    await this.#insert({
      replicationId,
      id: r.point,
      takenAt: r.takenAt,
      consistency: r.consistency,
      consistencyNote: r.consistencyNote,
      disks: JSON.stringify(r.disks),
      dirtyBytes: r.disks.reduce((n, d) => n + d.dirtyBytes, 0),
      sentBytes: r.disks.reduce((n, d) => n + d.sentBytes, 0),
      taskId,
      createdAt: now(),
    });
  }

  /** A point the replica's host holds that no cycle recorded (its manager died first). */
  async recordHeld(replicationId: string, p: ReplicaPoint): Promise<void> {
    const disks: ReplicatedDisk[] = p.disks.map((d) => ({
      name: d.name,
      sizeBytes: d.sizeBytes,
      mode: 'incremental',
      fullReason: null,
      dirtyBytes: 0,
      readBytes: 0,
      sentBytes: 0,
    }));
    await this.#insert({
      replicationId,
      id: p.id,
      takenAt: p.takenAt,
      consistency: p.consistency,
      consistencyNote: "recorded from the replica's host: the cycle that made it did not record it",
      disks: JSON.stringify(disks),
      dirtyBytes: 0,
      sentBytes: 0,
      taskId: null,
      createdAt: now(),
    });
  }

  async #insert(row: RecoveryPointTable): Promise<void> {
    await this.#db
      .insertInto('recoveryPoints')
      .values(row)
      .onConflict((oc) => oc.columns(['replicationId', 'id']).doNothing())
      .execute();
  }

  async drop(replicationId: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.#db
      .deleteFrom('recoveryPoints')
      .where('replicationId', '=', replicationId)
      .where('id', 'in', ids)
      .execute();
  }

  /** A relationship's points as shown, each marked kept or not by its retention (points.ts). */
  async wire(row: ReplicationTable): Promise<RecoveryPointInfo[]> {
    const points = await this.of(row.id);
    const marks = new Map(
      markPoints(
        points.map((p) => ({
          id: p.id,
          takenAt: Date.parse(p.takenAt),
          appConsistent: p.consistency === 'application',
        })),
        row.points,
        pointPeriodMs(row.appConsistentEveryS),
      ).map((m) => [m.point.id, m.kept]),
    );
    return points.map((p) => ({
      id: p.id,
      takenAt: p.takenAt,
      consistency: p.consistency as RecoveryPointInfo['consistency'],
      consistencyNote: p.consistencyNote,
      disks: JSON.parse(p.disks) as ReplicatedDisk[],
      dirtyBytes: p.dirtyBytes,
      sentBytes: p.sentBytes,
      task: p.taskId,
      kept: marks.get(p.id) ?? null,
    }));
  }
}
