import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { Datastore } from '../../backup/datastore/datastore.ts';
import { FixedIndex } from '../../backup/datastore/fixed-index.ts';
import { createLogger } from '../../log.ts';
import { rejectsWith } from '../../testing.ts';
import { LiveRestores } from './live-restore.ts';

const run = promisify(execFile);
const CHUNK = 64 * 1024;
const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tern-live-restore-'));
after(() => fs.rm(root, { recursive: true, force: true }));
const VM = '0a1b2c3d-0000-4000-8000-00000000abcd';

test('a target volume becomes an overlay on the served backup: QEMU reads the backup through it, and asking again keeps it', async () => {
  // 40 MiB: more than one read or block status request, mostly zeros.
  const disk = Buffer.alloc(40 * 1024 * 1024);
  randomBytes(3 * CHUNK).copy(disk, 0);
  randomBytes(CHUNK + 512).copy(disk, 33 * 1024 * 1024);
  const key = randomBytes(32);
  const store = await Datastore.create(path.join(root, 'ds'), { key });
  const index = new FixedIndex(disk.length, CHUNK);
  for (let i = 0; i < index.count; i++) {
    const { offset, length } = index.range(i);
    index.setDigest(i, (await store.chunks.insert(disk.subarray(offset, offset + length))).digest);
  }
  await store.commitBackup('vm-1', 'b1', [{ name: 'disk0', index }]);
  await fs.writeFile(path.join(root, 'disk.raw'), disk);

  const restores = new LiveRestores(
    path.join(root, 'state'),
    { p: path.join(root, 'pool') },
    createLogger('live-restore-test', 'error'),
  );
  const req = {
    datastore: { path: path.join(root, 'ds'), key: key.toString('base64') },
    group: 'vm-1',
    id: 'b1',
    disks: [{ disk: 'disk0', target: { pool: 'p', path: 'vm/disk0.qcow2' } }],
  };
  try {
    await restores.prepare(VM, req);
    const overlay = path.join(root, 'pool/vm/disk0.qcow2');
    const compare = () =>
      run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', overlay, path.join(root, 'disk.raw')]);
    assert.match((await compare()).stdout, /identical/);
    // After an agent restart the manager asks again: the same overlay, served anew.
    await restores.finish(VM);
    await restores.prepare(VM, req);
    assert.match((await compare()).stdout, /identical/);
    // A volume that is not this restore's overlay is never taken over.
    await fs.writeFile(path.join(root, 'pool/vm/other.qcow2'), 'not an overlay');
    await rejectsWith(
      restores.prepare(VM, {
        ...req,
        disks: [{ disk: 'disk0', target: { pool: 'p', path: 'vm/other.qcow2' } }],
      }),
      'conflict',
    );
    assert.equal(restores.serving(VM), false);
    // One whose data is all in already (the restore ended, unrecorded) is kept as it is.
    await run('qemu-img', [
      'convert',
      '-O',
      'qcow2',
      path.join(root, 'disk.raw'),
      path.join(root, 'pool/vm/done.qcow2'),
    ]);
    await restores.prepare(VM, {
      ...req,
      disks: [{ disk: 'disk0', target: { pool: 'p', path: 'vm/done.qcow2' } }],
    });
    const done = JSON.parse(
      (await run('qemu-img', ['info', '--output=json', path.join(root, 'pool/vm/done.qcow2')])).stdout,
    );
    assert.equal(done['backing-filename'], undefined);
  } finally {
    await restores.close();
  }
});
