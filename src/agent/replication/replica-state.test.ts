import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  afterDrop,
  childOf,
  type PendingFile,
  type PointsFile,
  planPrepare,
  planPrune,
} from './replica-state.ts';

const t = (h: number) => `2026-12-07T${String(h).padStart(2, '0')}-00-00Z`;
const point = (h: number, backing: number | null) => ({
  id: t(h),
  takenAt: '2026-12-07T00:00:00.000Z',
  consistency: 'crash' as const,
  disks: [{ name: 'disk0', sizeBytes: 1 << 20, backing: backing === null ? null : t(backing) }],
});
const chain = (...hours: number[]): PointsFile => ({
  points: hours.map((h, i) => point(h, i === 0 ? null : hours[i - 1]!)),
  pins: [],
  merging: null,
});
const disks = [{ name: 'disk0', sizeBytes: 1 << 20 }];
const pending = (h: number, base: number | null): PendingFile => ({
  point: t(h),
  base: base === null ? null : t(base),
  disks,
  resume: [{ disk: 'disk0', offset: 4096 }],
  ticketSha256: null,
  ticketExpires: '2026-12-07T00:00:00.000Z',
});

describe('replica books', () => {
  it('a cycle goes on the newest point, newer than it; a committed point is not prepared again', () => {
    const s = chain(1, 2);
    assert.deepEqual(planPrepare(s, null, { point: t(3), base: t(2), disks }), { resume: null });
    assert.throws(
      () => planPrepare(s, null, { point: t(3), base: t(1), disks }),
      /goes on the newest recovery point/,
    );
    assert.throws(() => planPrepare(s, null, { point: t(2), base: t(1), disks }), /committed already/);
    assert.throws(() => planPrepare(s, null, { point: t(0), base: null, disks }), /not newer/);
    assert.throws(
      () => planPrepare(chain(), null, { point: t(3), base: t(2), disks }),
      /needs an initial copy/,
    );
    // A resync: a whole copy beside the older points.
    assert.deepEqual(planPrepare(s, null, { point: t(3), base: null, disks }), { resume: null });
  });

  it('only an initial copy of the same point and disks resumes', () => {
    const none = chain();
    assert.deepEqual(planPrepare(none, pending(1, null), { point: t(1), base: null, disks }).resume, [
      { disk: 'disk0', offset: 4096 },
    ]);
    assert.equal(planPrepare(none, pending(1, null), { point: t(2), base: null, disks }).resume, null);
    const bigger = [{ name: 'disk0', sizeBytes: 2 << 20 }];
    assert.equal(
      planPrepare(none, pending(1, null), { point: t(1), base: null, disks: bigger }).resume,
      null,
    );
    assert.equal(planPrepare(chain(1), pending(2, 1), { point: t(2), base: t(1), disks }).resume, null);
  });

  it('prune drops what is not kept, never the newest, and nothing a pin freezes', () => {
    const s = chain(1, 2, 3, 4, 5);
    assert.deepEqual(planPrune(s, [t(5), t(3)]), { drop: [t(1), t(2), t(4)], held: [] });
    assert.throws(() => planPrune(s, [t(4)]), /newest recovery point, .* is always kept/);
    const pinned = { ...s, pins: [{ point: t(2), volume: { pool: 'p', path: 'vm/disk0.qcow2' } }] };
    assert.deepEqual(planPrune(pinned, [t(5)]), { drop: [t(3), t(4)], held: [t(1), t(2)] });
  });

  it('a point merged away leaves its child standing on what it stood on', () => {
    const s = chain(1, 2, 3);
    assert.equal(childOf(s, t(2), 'disk0')?.id, t(3));
    assert.equal(childOf(s, t(3), 'disk0'), null);
    const after = afterDrop({ ...s, merging: { drop: t(2) } }, t(2));
    assert.deepEqual(
      after.points.map((p) => [p.id, p.disks[0]!.backing]),
      [
        [t(1), null],
        [t(3), t(1)],
      ],
    );
    assert.equal(after.merging, null);
    assert.deepEqual(afterDrop(after, t(9)).points, after.points);
  });
});
