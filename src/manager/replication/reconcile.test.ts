import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ReplicaPoint } from '../../wire/replication.ts';
import { brokenChain, reconcilePoints } from './reconcile.ts';

const point = (id: string): ReplicaPoint => ({
  id,
  takenAt: `${id.slice(0, 10)}T00:00:00.000Z`,
  consistency: 'crash',
  disks: [],
  pinnedBy: [],
});
const a = '2026-12-07T10-00-00Z';
const b = '2026-12-07T10-00-30Z';
const c = '2026-12-07T10-01-00Z';

test('the host committed a point the manager never recorded: it is recorded', () => {
  assert.deepEqual(reconcilePoints([{ id: a }], [point(a), point(b)]), { record: [point(b)], drop: [] });
});

test('the manager recorded a point the host merged away or lost: it is dropped', () => {
  assert.deepEqual(reconcilePoints([{ id: a }, { id: b }, { id: c }], [point(a), point(c)]), {
    record: [],
    drop: [b],
  });
});

test('agreeing sides change nothing; an empty replica drops everything', () => {
  assert.deepEqual(reconcilePoints([{ id: a }], [point(a)]), { record: [], drop: [] });
  assert.deepEqual(reconcilePoints([{ id: a }, { id: b }], []), { record: [], drop: [a, b] });
});

test('a chain is broken when the host lacks the newest point the manager recorded', () => {
  assert.equal(brokenChain(null, []), null);
  assert.equal(brokenChain(b, [point(a), point(b)]), null);
  assert.match(
    brokenChain(c, [point(a), point(b)]) ?? '',
    /no longer holds recovery point .*10-01-00Z \(its newest is .*10-00-30Z\)/,
  );
  assert.match(brokenChain(a, []) ?? '', /holds none of its recovery points/);
});
