import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bitmapDistrust, ownBitmaps } from './bitmap-trust.ts';

const ok = (name: string) => ({ name, persistent: true, inconsistent: false });

test('the bitmaps since the previous backup are trusted only when it is there and none is inconsistent', () => {
  const p = 'tern-bk-1a2b3c4d';
  assert.equal(bitmapDistrust([], p, null), null);
  assert.equal(bitmapDistrust([ok(`${p}-b1`)], p, 'b1'), null);
  // A failed backup's bitmap after it is fine: the next backup merges both.
  assert.equal(bitmapDistrust([ok(`${p}-b1`), ok(`${p}-b2`)], p, 'b1'), null);
  assert.match(bitmapDistrust([ok(`${p}-b0`)], p, 'b1')!, /no dirty bitmap tern-bk-1a2b3c4d-b1/);
  // Another datastore's bitmaps are none of this one's business.
  assert.equal(
    bitmapDistrust([ok(`${p}-b1`), { ...ok('tern-bk-ffffffff-x'), inconsistent: true }], p, 'b1'),
    null,
  );
  assert.match(
    bitmapDistrust([ok(`${p}-b1`), { ...ok(`${p}-b2`), inconsistent: true }], p, 'b1')!,
    /b2 is inconsistent/,
  );
  assert.match(bitmapDistrust([{ ...ok(`${p}-b1`), persistent: false }], p, 'b1')!, /not persistent/);
  assert.deepEqual(
    ownBitmaps([ok(`${p}-b1`), ok(`${p}-view`), ok('other')], p).map((b) => b.name),
    [`${p}-b1`],
  );
});
