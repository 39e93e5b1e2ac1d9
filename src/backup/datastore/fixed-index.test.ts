import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { FixedIndex } from './fixed-index.ts';

const name = (i: number) => createHash('sha256').update(`chunk ${i}`).digest('hex');

function filled(size: number, chunkSize: number): FixedIndex {
  const index = new FixedIndex(size, chunkSize);
  for (let i = 0; i < index.count; i++) index.setDigest(i, name(i));
  return index;
}

test('an index cuts a disk into fixed chunks, the last one short, and round-trips', () => {
  const index = filled(10 * 4096 + 100, 4096);
  assert.equal(index.count, 11);
  assert.deepEqual(index.range(10), { offset: 40960, length: 100 });
  assert.ok(index.complete);
  const again = FixedIndex.decode(index.encode());
  assert.equal(again.diskSize, index.diskSize);
  for (let i = 0; i < index.count; i++) assert.equal(again.digest(i), name(i));
});

test('an index with a chunk not yet named is not complete', () => {
  const index = new FixedIndex(3 * 4096, 4096);
  index.setDigest(0, name(0));
  index.setDigest(2, name(2));
  assert.equal(index.complete, false);
});

test('a damaged index is refused: any altered byte, a short file, a count that does not fit its size', () => {
  const bytes = filled(8 * 65536, 65536).encode();
  for (let at = 0; at < bytes.length; at += 7) {
    const bad = Buffer.from(bytes);
    bad[at]! ^= 1;
    assert.throws(
      () => FixedIndex.decode(bad),
      (e: unknown) => e instanceof TernError && e.code === 'storage_error',
    );
  }
  assert.throws(() => FixedIndex.decode(bytes.subarray(0, 40)), /damaged/);
});

test('an incremental index starts from the previous one; a resized disk drops only the short last chunk', () => {
  const prev = filled(4 * 4096 + 512, 4096);
  const same = new FixedIndex(prev.diskSize, 4096, prev);
  assert.ok(same.complete);
  const grown = new FixedIndex(6 * 4096, 4096, prev);
  assert.equal(grown.digest(3), name(3));
  assert.equal(grown.digest(4), '0'.repeat(64), 'the old short last chunk is read again');
  assert.equal(grown.complete, false);
  assert.throws(() => new FixedIndex(prev.diskSize, 8192, prev), /differs/);
});

test('chunk sizes are powers of two within bounds', () => {
  for (const bad of [0, 1000, 4095, 6144, 2 ** 27])
    assert.throws(() => new FixedIndex(1 << 20, bad), /chunk size/);
});
