import assert from 'node:assert/strict';
import { test } from 'node:test';
import { changedChunks } from './changed-chunks.ts';

const K = 1024;

test('an incremental reads every chunk a dirty extent touches, once, and no other', () => {
  const extents = [
    { offset: 0, length: 64 * K, flags: 0 },
    { offset: 64 * K, length: 4 * K, flags: 1 },
    { offset: 68 * K, length: 60 * K, flags: 0 },
    { offset: 128 * K, length: 130 * K, flags: 1 },
    { offset: 258 * K, length: 254 * K, flags: 0 },
    { offset: 512 * K, length: 1, flags: 1 },
  ];
  assert.deepEqual(changedChunks(extents, 64 * K), [1, 2, 3, 4, 8]);
  assert.deepEqual(changedChunks(extents, 256 * K), [0, 1, 2]);
  assert.deepEqual(changedChunks([{ offset: 0, length: 1 << 20, flags: 0 }], 4096), []);
});
