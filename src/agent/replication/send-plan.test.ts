import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { STATE_DIRTY, STATE_HOLE, STATE_ZERO } from '../backup/nbd/protocol.ts';
import { resumeRanges, resumes, sendMode, sendRanges } from './send-plan.ts';

const K = 64 * 1024;

describe('sendMode', () => {
  const base = {
    previous: '2026-12-07T18-00-00Z',
    size: 16 * K,
    format: 'qcow2' as const,
    bitmapDistrust: null,
  };
  it('the first point is whole without a reason; a later one incremental when its bitmap is trusted', () => {
    assert.deepEqual(sendMode({ ...base, previous: null }), { mode: 'full', reason: null });
    assert.deepEqual(sendMode(base), { mode: 'incremental' });
  });
  it('a bitmap that cannot be trusted, or a raw disk, sends the disk whole and says why', () => {
    assert.deepEqual(sendMode({ ...base, bitmapDistrust: 'QEMU was killed' }), {
      mode: 'full',
      reason: 'QEMU was killed',
    });
    const raw = sendMode({ ...base, format: 'raw' });
    assert.equal(raw.mode, 'full');
    assert.match((raw as { reason: string }).reason, /raw/);
  });
});

describe('sendRanges', () => {
  it('incremental: only the dirty extents, neighbours joined, long runs cut', () => {
    const extents = [
      { offset: 0, length: K, flags: STATE_DIRTY },
      { offset: K, length: K, flags: STATE_DIRTY },
      { offset: 2 * K, length: 4 * K, flags: 0 },
      { offset: 6 * K, length: 5 * K, flags: STATE_DIRTY },
    ];
    assert.deepEqual(sendRanges(extents, 'incremental', 0, 4 * K), [
      { offset: 0, length: 2 * K, zero: false },
      { offset: 6 * K, length: 4 * K, zero: false },
      { offset: 10 * K, length: K, zero: false },
    ]);
  });
  it('full: data as data, zero extents as zeroes (never cut), every byte covered', () => {
    const extents = [
      { offset: 0, length: 3 * K, flags: 0 },
      { offset: 3 * K, length: 10 * K, flags: STATE_HOLE | STATE_ZERO },
      { offset: 13 * K, length: K, flags: STATE_ZERO },
      { offset: 14 * K, length: 2 * K, flags: 0 },
    ];
    const ranges = sendRanges(extents, 'full', 0, 2 * K);
    assert.deepEqual(ranges, [
      { offset: 0, length: 2 * K, zero: false },
      { offset: 2 * K, length: K, zero: false },
      { offset: 3 * K, length: 11 * K, zero: true },
      { offset: 14 * K, length: 2 * K, zero: false },
    ]);
    assert.equal(
      ranges.reduce((s, r) => s + r.length, 0),
      16 * K,
    );
  });
  it('a resumed initial copy sends nothing below its resume offset, cutting an extent across it', () => {
    const extents = [
      { offset: 0, length: 4 * K, flags: 0 },
      { offset: 4 * K, length: 4 * K, flags: STATE_ZERO },
    ];
    assert.deepEqual(sendRanges(extents, 'full', 3 * K, 16 * K), [
      { offset: 3 * K, length: K, zero: false },
      { offset: 4 * K, length: 4 * K, zero: true },
    ]);
    assert.deepEqual(sendRanges(extents, 'full', 8 * K, 16 * K), []);
  });
});

describe('resuming an interrupted initial copy', () => {
  const K = 1024;
  it('sends, below the resume offset, what changed since the interrupted view, and everything above it', () => {
    const dirty = [
      { offset: 0, length: K, flags: 0 },
      { offset: K, length: 2 * K, flags: STATE_DIRTY },
      { offset: 3 * K, length: 3 * K, flags: 0 },
      { offset: 6 * K, length: 4 * K, flags: STATE_DIRTY },
    ];
    const allocation = [
      { offset: 0, length: 8 * K, flags: 0 },
      { offset: 8 * K, length: 2 * K, flags: STATE_ZERO },
    ];
    assert.deepEqual(resumeRanges(dirty, allocation, 7 * K, 16 * K), [
      { offset: K, length: 2 * K, zero: false },
      // The dirty extent across the offset is cut there; above it, the whole copy goes on.
      { offset: 6 * K, length: K, zero: false },
      { offset: 7 * K, length: K, zero: false },
      { offset: 8 * K, length: 2 * K, zero: true },
    ]);
  });
  it('is asked only of an initial copy some of which arrived', () => {
    assert.equal(resumes(null, [{ offset: 0 }]), false);
    assert.equal(resumes(null, [{ offset: 0 }, { offset: 4096 }]), true);
    assert.equal(resumes('2026-12-07T10-00-00Z', [{ offset: 4096 }]), false);
  });
});
