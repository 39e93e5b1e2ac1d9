import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { readSlots, type SlotRecord, slotSize, writeSlot } from './statefile.ts';

function tempFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-statefile-'));
  return path.join(dir, 'ha.statefile');
}

const rec = (over: Partial<SlotRecord> = {}): SlotRecord => ({
  hostId: 'host-a',
  counter: 1,
  wallTimeMs: 1_750_000_000_000,
  timeoutS: 30,
  fenced: false,
  ...over,
});

test('a slot reads back as written', async () => {
  const file = tempFile();
  const r = rec({ hostId: 'hôte-ü', counter: 2 ** 40 + 3, fenced: true, timeoutS: 10 });
  await writeSlot(file, 3, r);
  const slots = await readSlots(file, 8);
  assert.equal(slots.length, 8);
  assert.deepEqual(slots[3], { slot: 3, state: 'valid', record: r });
  // The slots before it are zeros (a hole), those after it beyond the end of the file.
  for (const i of [0, 1, 2, 4, 5, 6, 7]) assert.deepEqual(slots[i], { slot: i, state: 'empty' });
});

test('the file grows to hold a high slot, and only to its end', async () => {
  const file = tempFile();
  await writeSlot(file, 100, rec());
  assert.equal(fs.statSync(file).size, 101 * slotSize);
  await writeSlot(file, 4095, rec({ hostId: 'last' }));
  assert.equal(fs.statSync(file).size, 4096 * slotSize);
  const slots = await readSlots(file, 4096);
  assert.equal(slots[4095].state === 'valid' && slots[4095].record.hostId, 'last');
  await assert.rejects(writeSlot(file, 4096, rec()), /HA slot must be/);
});

test('two hosts renew their own slots without touching each other', async () => {
  const file = tempFile();
  await writeSlot(file, 0, rec({ hostId: 'a', counter: 1 }));
  await writeSlot(file, 1, rec({ hostId: 'b', counter: 1 }));
  for (let i = 2; i <= 50; i++) {
    await Promise.all([
      writeSlot(file, 0, rec({ hostId: 'a', counter: i })),
      writeSlot(file, 1, rec({ hostId: 'b', counter: i * 10 })),
    ]);
  }
  const [a, b] = await readSlots(file, 2);
  assert.deepEqual(a, { slot: 0, state: 'valid', record: rec({ hostId: 'a', counter: 50 }) });
  assert.deepEqual(b, { slot: 1, state: 'valid', record: rec({ hostId: 'b', counter: 500 }) });
});

test('a torn, foreign or truncated slot is reported invalid, never thrown', async () => {
  const file = tempFile();
  await writeSlot(file, 0, rec({ hostId: 'a' }));
  await writeSlot(file, 1, rec({ hostId: 'b' }));
  await writeSlot(file, 2, rec({ hostId: 'c' }));
  const fd = fs.openSync(file, 'r+');
  // Slot 0: a torn write, the first half new and the second half old.
  const other = Buffer.alloc(256, 0x41);
  fs.writeSync(fd, other, 0, 256, 256);
  // Slot 1: someone else's data.
  fs.writeSync(fd, Buffer.from('#!/bin/sh\necho hello\n'.padEnd(512, '\0')), 0, 512, 512);
  fs.closeSync(fd);
  // Slot 3: only half of it made it before the end of the file.
  fs.appendFileSync(file, Buffer.alloc(100, 7));
  const slots = await readSlots(file, 5);
  assert.deepEqual(slots[0], {
    slot: 0,
    state: 'invalid',
    reason: 'checksum mismatch (torn or foreign write)',
  });
  assert.deepEqual(slots[1], { slot: 1, state: 'invalid', reason: 'not a Tern HA slot' });
  assert.equal(slots[2].state, 'valid');
  assert.deepEqual(slots[3], { slot: 3, state: 'invalid', reason: 'truncated slot' });
  assert.deepEqual(slots[4], { slot: 4, state: 'empty' });

  // Random bytes everywhere: every slot decodes to something, nothing throws.
  const junk = tempFile();
  fs.writeFileSync(junk, Buffer.from(Array.from({ length: 64 * slotSize }, (_, i) => (i * 7919) % 251)));
  const decoded = await readSlots(junk, 64);
  assert.ok(decoded.every((s) => s.state === 'invalid'));
});

test('a statefile that cannot be read is an error, not a set of silent leases', async () => {
  await assert.rejects(readSlots(path.join(tempFile(), 'missing'), 4), /cannot read the HA statefile/);
  await assert.rejects(writeSlot('/proc/version', 0, rec()), /cannot write HA slot 0/);
  await assert.rejects(readSlots(tempFile(), 5000), /slot count/);
});
