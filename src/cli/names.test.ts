import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandNames } from './names.ts';

test('ranges expand like bash brace expansion', () => {
  assert.deepEqual(expandNames(['web-{1..3}']), ['web-1', 'web-2', 'web-3']);
  assert.deepEqual(expandNames(['db-{08..10}']), ['db-08', 'db-09', 'db-10']);
  assert.deepEqual(expandNames(['a', 'r{1..2}c{1..2}']), ['a', 'r1c1', 'r1c2', 'r2c1', 'r2c2']);
  assert.throws(() => expandNames(['x-{3..1}']), /backwards/);
  assert.throws(() => expandNames(['x-{1..5000}']), /more than 1000/);
});
