import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { NbdClient } from './nbd/client.ts';
import { serveImage } from './qemu-nbd.ts';

test('a served image is let go at once once its client disconnected, reaped yet or not', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-qemu-nbd-'));
  try {
    const file = path.join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', file, '1M']);
    const served = await serveImage(file, { format: 'qcow2', readOnly: false });
    const nbd = await NbdClient.connect({ path: served.socket }, { exportName: served.exportName });
    await nbd.write(0, Buffer.alloc(4096, 7));
    await nbd.disconnect();
    // qemu-nbd ends with its client; forked away, it is an orphan that init may reap late, and
    // a zombie holds no lock: waiting for it cost a second on every disk of every cycle.
    const started = performance.now();
    await served.close();
    assert.ok(performance.now() - started < 500, `closed in ${Math.round(performance.now() - started)} ms`);
    // The image is free: served again, writable.
    const again = await serveImage(file, { format: 'qcow2', readOnly: false });
    await again.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
