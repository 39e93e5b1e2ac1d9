import assert from 'node:assert/strict';
import { test } from 'node:test';
import { markPoints, type RecoveryPoint } from './points.ts';

const H = 3_600_000;
const M = 60_000;
const t0 = Date.UTC(2026, 11, 7, 12, 0, 0);
const point = (id: string, ago: number, appConsistent = false): RecoveryPoint => ({
  id,
  takenAt: t0 - ago,
  appConsistent,
});
const kept = (marks: ReturnType<typeof markPoints>) =>
  marks.filter((m) => m.kept).map((m) => `${m.point.id}:${m.kept}`);

test('the newest point is kept, then the newest of each of the last N hours that have one', () => {
  // Every 5 minutes for three hours.
  const points = Array.from({ length: 37 }, (_, i) => point(`p${i}`, i * 5 * M));
  assert.deepEqual(kept(markPoints(points, 2, H)), ['p0:latest', 'p1:period', 'p12:period']);
  assert.deepEqual(kept(markPoints(points, 0, H)), ['p0:latest']);
});

test('an application-consistent point is kept over newer crash-consistent ones of its hour', () => {
  const points = [
    point('a', 0),
    point('b', 10 * M),
    point('c', 40 * M, true),
    point('d', 50 * M),
    point('e', 70 * M),
  ];
  assert.deepEqual(kept(markPoints(points, 2, H)), [
    'a:latest',
    'c:period, application-consistent',
    'e:period',
  ]);
});

test('hours without a point keep nothing and do not stretch the window; order of input does not matter', () => {
  const points = [point('old', 5 * H + M), point('new', 0), point('mid', 2 * H + M)];
  // Kept: the latest, and 'mid' in the third hour back; 'old' is in the sixth, beyond 3 hours.
  assert.deepEqual(kept(markPoints(points, 3, H)), ['new:latest', 'mid:period']);
  assert.deepEqual(
    markPoints(points, 3, H).map((m) => m.point.id),
    ['new', 'mid', 'old'],
  );
  assert.deepEqual(markPoints([], 3, H), []);
});

test('bounds: at most 24 older points, a positive period', () => {
  assert.throws(() => markPoints([point('a', 0)], 25, H), /0 to 24/);
  assert.throws(() => markPoints([point('a', 0)], 2, 0), /positive/);
  const day = Array.from({ length: 48 }, (_, i) => point(`p${i}`, i * 30 * M));
  assert.equal(kept(markPoints(day, 24, H)).length, 25);
});
