import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesOf, changedChunks, dataChunks } from './changed-chunks.ts';

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

test('a full backup reads every chunk an extent that may hold data touches; zero extents read as zeros', () => {
  const extents = [
    { offset: 0, length: 64 * K, flags: 3 }, // hole, zeros
    { offset: 64 * K, length: 4 * K, flags: 0 }, // data
    { offset: 68 * K, length: 124 * K, flags: 2 }, // allocated zeros
    { offset: 192 * K, length: 64 * K, flags: 1 }, // a hole that is not known to be zeros
  ];
  assert.deepEqual(dataChunks(extents, 64 * K), [1, 3]);
  assert.deepEqual(dataChunks(extents, 256 * K), [0]);
  assert.equal(
    bytesOf(extents, (f) => (f & 2) === 0),
    68 * K,
  );
});
