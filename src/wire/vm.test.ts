import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type DiskSpec, gibToBytes, withoutDisk } from './vm.ts';

const disk = (path: string, slot?: number): DiskSpec => ({
  volume: { pool: 'local', path },
  format: 'qcow2',
  readonly: false,
  ...(slot === undefined ? {} : { slot }),
});

test('removing a disk keeps the others on their slots', () => {
  const left = withoutDisk({ disks: [disk('a'), disk('b'), disk('c'), disk('d', 5)] }, 1);
  assert.deepEqual(
    left.map((d) => [d.volume.path, d.slot]),
    [
      ['a', 0],
      ['c', 2],
      ['d', 5],
    ],
  );
});

test('sizes in GiB become whole MiB', () => {
  assert.equal(gibToBytes(1), 1024 ** 3);
  assert.equal(gibToBytes(1.3) % (1024 * 1024), 0);
  assert.ok(gibToBytes(1.3) >= 1.3 * 1024 ** 3);
});
