import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesText, dedupRatio, figuresOf, modeOf, progressText } from './figures.ts';
import { backupDisks, backupIdAt, bitmapPrefix, diskIndexOf, nextBackupId, timeOfBackupId } from './names.ts';

test('a backup id is its UTC second, sortable, and reads back as that time', () => {
  const at = new Date('2026-12-07T14:39:23.456Z');
  assert.equal(backupIdAt(at), '2026-12-07T14-39-23Z');
  assert.equal(timeOfBackupId('2026-12-07T14-39-23Z')?.toISOString(), '2026-12-07T14:39:23.000Z');
  assert.equal(timeOfBackupId('../etc'), null);
  assert.ok(backupIdAt(new Date('2026-12-07T09:00:00Z')) < backupIdAt(new Date('2026-12-07T10:00:00Z')));
});

test('a second backup within the same second (or a clock gone back) gets a later id, never the same', () => {
  const at = new Date('2026-12-07T14:39:23.900Z');
  assert.equal(nextBackupId(at, null), '2026-12-07T14-39-23Z');
  assert.equal(nextBackupId(at, '2026-12-07T14-39-23Z'), '2026-12-07T14-39-24Z');
  assert.equal(nextBackupId(at, '2026-12-07T15-00-00Z'), '2026-12-07T15-00-01Z');
  assert.equal(nextBackupId(at, '2026-12-07T14-39-22Z'), '2026-12-07T14-39-23Z');
});

test('bitmap prefix per datastore; writable disks only, named by their spec index', () => {
  assert.equal(bitmapPrefix('1A2B3C4D-0000-4000-8000-000000000000'), 'tern-bk-1a2b3c4d');
  const vol = (path: string) => ({ pool: 'local', path });
  const disks = backupDisks({
    disks: [
      { volume: vol('a.qcow2'), format: 'qcow2', readonly: false },
      { volume: vol('iso.raw'), format: 'raw', readonly: true },
      { volume: vol('c.raw'), format: 'raw', readonly: false },
    ],
  });
  assert.deepEqual(
    disks.map((d) => [d.name, d.volume.path, d.format]),
    [
      ['disk0', 'a.qcow2', 'qcow2'],
      ['disk2', 'c.raw', 'raw'],
    ],
  );
  assert.equal(diskIndexOf('disk2'), 2);
  assert.equal(diskIndexOf('disk'), null);
});

test('figures: sizes add up, dedup is size over new bytes, any full disk makes a full backup', () => {
  const disk = (mode: 'full' | 'incremental', newBytes: number) => ({
    name: 'disk0',
    sizeBytes: 1000,
    mode,
    fullReason: null,
    dirtyBytes: 100,
    readBytes: 120,
    chunks: 10,
    newChunks: 1,
    newBytes,
  });
  const f = figuresOf([disk('incremental', 50), disk('full', 150)]);
  assert.deepEqual(f, { sizeBytes: 2000, changedBytes: 200, readBytes: 240, newBytes: 200 });
  assert.equal(dedupRatio(f), 10);
  assert.equal(dedupRatio({ sizeBytes: 2000, newBytes: 0 }), null);
  assert.equal(modeOf([disk('incremental', 1)]), 'incremental');
  assert.equal(modeOf([disk('incremental', 1), disk('full', 1)]), 'full');
});

test('progress says bytes done of total, written, speed and time left', () => {
  const line = progressText({
    type: 'progress',
    item: 'disk0',
    doneBytes: 1024 ** 3,
    totalBytes: 4 * 1024 ** 3,
    writtenBytes: 300 * 1024 ** 2,
    bytesPerS: 100 * 1024 ** 2,
  });
  assert.equal(line, 'disk0: 1.0 GiB of 4.0 GiB read, 300.0 MiB written, 100.0 MiB/s, ETA 31 s');
  assert.equal(bytesText(512), '512 B');
});
