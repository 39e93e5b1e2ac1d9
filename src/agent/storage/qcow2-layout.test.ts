import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { headerBytes, parseQcow2Header, qcow2Problem, tableProblem } from './qcow2-layout.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-qcow2-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A real qcow2 overlay with some data written, as a linked clone's disk is after a boot. */
function overlay(name: string): string {
  const base = path.join(dir, `${name}-base.qcow2`);
  const file = path.join(dir, `${name}.qcow2`);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', base, '1G']);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', file]);
  execFileSync('qemu-io', ['-c', 'write 0 4M', '-c', 'write 512M 1M', file], { stdio: 'ignore' });
  return file;
}

test('a sound qcow2 overlay passes', async () => {
  assert.equal(await qcow2Problem(overlay('sound')), null);
});

test('an overlay cut short to 64 KiB is refused, naming what lies past its end', async () => {
  const file = overlay('cut');
  fs.truncateSync(file, 64 * 1024);
  assert.match(
    (await qcow2Problem(file)) ?? '',
    /cut short: its refcount table at byte 65536 lies past the end/,
  );
});

test('an overlay cut inside its data loses the L2 tables its L1 table points to', async () => {
  const file = overlay('cut-late');
  // The L2 table of the write at 512M was allocated after the first data: cut there.
  fs.truncateSync(file, 4 * 1024 * 1024);
  assert.match((await qcow2Problem(file)) ?? '', /L1 table entry \d+ at byte \d+ lies past the end/);
});

test('an image QEMU marked corrupt is refused', async () => {
  const file = overlay('marked');
  const fd = fs.openSync(file, 'r+');
  const bits = Buffer.alloc(8);
  bits.writeBigUInt64BE(2n);
  fs.writeSync(fd, bits, 0, 8, 72);
  fs.closeSync(fd);
  assert.match((await qcow2Problem(file)) ?? '', /QEMU marked it corrupt/);
});

test('a file without a qcow2 header is refused', async () => {
  const file = path.join(dir, 'raw.img');
  fs.writeFileSync(file, Buffer.alloc(headerBytes));
  assert.equal(await qcow2Problem(file), 'it has no qcow2 header');
});

test('table entries must point at whole clusters inside the file', () => {
  const table = Buffer.alloc(16);
  table.writeBigUInt64BE(0x8000_0000_0003_0000n, 0); // "copied" flag + cluster 3: fine
  assert.equal(tableProblem('L1 table', table, 65536, 4 * 65536), null);
  table.writeBigUInt64BE(0x30200n, 8);
  assert.match(tableProblem('L1 table', table, 65536, 4 * 65536) ?? '', /entry 1 .* points inside a cluster/);
  assert.equal(parseQcow2Header(Buffer.alloc(10)), 'it has no qcow2 header');
});
