import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSize } from './sizes.ts';

test('sizes parse to MiB', () => {
  assert.equal(parseSize('512M', 'M', 'memory'), 512);
  assert.equal(parseSize('2G', 'M', 'memory'), 2048);
  assert.equal(parseSize('2GiB', 'M', 'memory'), 2048);
  assert.equal(parseSize('1.5', 'G', 'disk'), 1536);
  assert.equal(parseSize('512', 'M', 'memory'), 512);
  assert.throws(() => parseSize('lots', 'M', 'memory'), /not a size/);
  assert.throws(() => parseSize('0', 'M', 'memory'), /more than zero/);
});
