import assert from 'node:assert/strict';
import { test } from 'node:test';
import { byName, compareNames, expandNames } from './names.ts';

test('ranges expand like bash brace expansion', () => {
  assert.deepEqual(expandNames(['web-{1..3}']), ['web-1', 'web-2', 'web-3']);
  assert.deepEqual(expandNames(['db-{08..10}']), ['db-08', 'db-09', 'db-10']);
  assert.deepEqual(expandNames(['a', 'r{1..2}c{1..2}']), ['a', 'r1c1', 'r1c2', 'r2c1', 'r2c2']);
  assert.throws(() => expandNames(['x-{3..1}']), /backwards/);
  assert.throws(() => expandNames(['x-{1..5000}']), /more than 1000/);
});

test('names sort as people count: t-2 before t-10', () => {
  const names = [
    't-10',
    't-2',
    'web',
    't-1',
    'db-02',
    'db-1',
    'db-10',
    't-100',
    'a1b10',
    'a1b9',
    't-',
    'T-3',
  ];
  assert.deepEqual(names.slice().sort(compareNames), [
    'T-3',
    'a1b9',
    'a1b10',
    'db-1',
    'db-02',
    'db-10',
    't-',
    't-1',
    't-2',
    't-10',
    't-100',
    'web',
  ]);
  assert.equal(compareNames('x-99999999999999999999999', 'x-100000000000000000000000') < 0, true);
  assert.equal(compareNames('same', 'same'), 0);
  assert.deepEqual(
    byName([{ name: 'vm-11' }, { name: 'vm-3' }]).map((v) => v.name),
    ['vm-3', 'vm-11'],
  );
});
