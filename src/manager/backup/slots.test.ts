import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackupSlots, mayStart } from './slots.ts';

test('a backup may start while both its host and its datastore are below their bounds', () => {
  assert.equal(mayStart({ host: 0, datastore: 0 }, { perHost: 1, perDatastore: 1 }), true);
  assert.equal(mayStart({ host: 1, datastore: 0 }, { perHost: 1, perDatastore: 4 }), false);
  assert.equal(mayStart({ host: 0, datastore: 4 }, { perHost: 2, perDatastore: 4 }), false);
});

test('slots are counted across takers per host and per datastore, and released once', async () => {
  const slots = new BackupSlots();
  const limits = { perHost: 1, perDatastore: 2 };
  const a = slots.tryTake('h1', 'ds', limits);
  assert.ok(a);
  assert.equal(slots.tryTake('h1', 'ds', limits), null, 'h1 is at its bound');
  const b = slots.tryTake('h2', 'ds', limits);
  assert.ok(b);
  assert.equal(slots.tryTake('h3', 'ds', limits), null, 'the datastore is at its bound');
  assert.ok(slots.tryTake('h3', 'other', limits), 'another datastore has room');
  const freed = slots.released();
  a();
  a();
  await freed;
  assert.deepEqual(slots.counts('h1', 'ds'), { host: 0, datastore: 1 });
  assert.ok(slots.tryTake('h4', 'ds', limits));
});
