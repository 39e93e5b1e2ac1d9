/**
 * Storage-full protection: a VM whose disk cannot grow is paused (not corrupted), an alert
 * is raised, and once space is freed `resume` continues the guest's writes with nothing lost.
 * The pool is a deliberately small tmpfs.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Alert } from '../src/wire/alert.ts';
import { type Cluster, startCluster, tempDir } from './harness.ts';

const root = process.getuid?.() === 0;
let c: Cluster;
let small: string;
const fill = 128 * 1024 * 1024;
const line = 'TERN-STORAGE-FULL-TEST\n';

before(async () => {
  if (!root) return;
  const dir = tempDir('tern-full');
  small = path.join(dir, 'small');
  fs.mkdirSync(small);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', small]);
  c = await startCluster('full', { dir, pools: { small } });
});
after(async () => {
  await c?.stop();
  if (small) execFileSync('umount', ['-l', small]);
});

function expectedDigest(): string {
  const h = createHash('sha256');
  const chunk = Buffer.from(line.repeat(Math.ceil((1024 * 1024) / line.length)));
  let left = fill;
  let offset = 0;
  while (left > 0) {
    // `yes` repeats the line; keep the phase of the pattern across chunks.
    const start = offset % line.length;
    const piece = chunk.subarray(start, start + Math.min(left, chunk.length - line.length));
    h.update(piece);
    left -= piece.length;
    offset += piece.length;
  }
  return h.digest('hex');
}

test('a full pool pauses the VM with an alert; resume after freeing space loses nothing', {
  skip: !root && 'needs root to mount a tmpfs',
}, async () => {
  const script = [
    '#!/bin/sh',
    // In the background, so that the boot finishes while the disk fills.
    `setsid sh -c 'yes ${line.trim()} | head -c ${fill} >/dev/vdb; sync; echo "FILL-DONE $(head -c ${fill} /dev/vdb | sha256sum)" >/dev/console; poweroff' </dev/null >/dev/null 2>&1 &`,
    '',
  ].join('\n');
  // The pool is thin-provisioned past its size on purpose: that is how a running disk fills it.
  await c.api.request('PATCH', '/api/v1/cluster/settings', { storageOvercommit: 16 });
  const t = await c.api.task('POST', '/api/v1/vms', {
    name: 'filler',
    template: 'tiny',
    pool: 'small',
    extraDisksGiB: [0.25],
    userData: script,
    start: true,
  });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  const paused = await c.api.waitVm(
    'filler',
    (v) => v.state === 'paused',
    180_000,
    'paused on the full pool',
  );
  assert.match(paused.stateReason ?? '', /^storage full/);
  const alerts = await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts');
  const alert = alerts.items.find((a) => a.id === `vm:${paused.id}:storage-full`);
  assert.ok(alert, 'a storage-full alert is active');
  assert.equal(alert.severity, 'critical');
  assert.match(alert.message, /tern vm resume filler/);

  execFileSync('mount', ['-o', 'remount,size=512m', small]);
  const resumed = await c.api.task('POST', '/api/v1/vms/filler/resume');
  assert.equal(resumed.state, 'succeeded', JSON.stringify(resumed.error));

  // The guest powers off once it has written and read back its data.
  await c.api.waitVm('filler', (v) => v.state === 'stopped', 240_000, 'done writing');
  const { text } = await c.api.request<{ text: string }>('GET', '/api/v1/vms/filler/console?bytes=65536');
  const digest = expectedDigest();
  assert.match(text, new RegExp(`FILL-DONE ${digest}`), 'every byte the guest wrote is on its disk');
  const after = await c.api.request<{ items: Alert[] }>('GET', '/api/v1/alerts?all=true');
  assert.ok(after.items.find((a) => a.id === alert.id)?.clearedAt, 'the alert is cleared');
});
