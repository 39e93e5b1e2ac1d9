import assert from 'node:assert/strict';
import { test } from 'node:test';
import { diskMode } from './disk-mode.ts';

const M = 1024 * 1024;
const facts = {
  previous: 'b1',
  previousDisk: { size: 64 * M, chunkSize: 4 * M },
  size: 64 * M,
  chunkSize: 4 * M,
  format: 'qcow2' as const,
  bitmapDistrust: null,
};

test('an incremental only when the previous backup, the disk and its bitmap all fit; otherwise full with why', () => {
  assert.deepEqual(diskMode(facts), { mode: 'incremental' });
  assert.deepEqual(diskMode({ ...facts, previous: null }), { mode: 'full', reason: null });
  const why = (f: Partial<typeof facts> | { previousDisk: string }) => {
    const m = diskMode({ ...facts, ...f });
    assert.equal(m.mode, 'full');
    return m.mode === 'full' ? m.reason : null;
  };
  assert.equal(why({ previousDisk: 'backup b1 is unreadable' }), 'backup b1 is unreadable');
  assert.match(why({ format: 'raw' } as never)!, /raw: only qcow2/);
  assert.match(why({ chunkSize: M })!, /4194304-byte chunks, this one 1048576/);
  assert.match(why({ size: 128 * M })!, /was 67108864 bytes at backup b1, now 134217728/);
  assert.equal(why({ bitmapDistrust: 'bitmap x is inconsistent' } as never), 'bitmap x is inconsistent');
});
