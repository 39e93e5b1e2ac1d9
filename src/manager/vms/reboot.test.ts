import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyGuestInfo, type GuestInfo, type Vm } from '../../wire/vm.ts';
import { type BootMark, rebootStage } from './reboot.ts';

const bootA = '0f6a9a5e-7c1e-4c55-9a43-1f0a5b1f3a01';
const bootB = '5d2c1b7e-9a2e-4f7b-8c1d-2e3f4a5b6c7d';
const before: BootMark = { boots: 1, bootId: bootA, agent: true };
const seen = (state: Vm['state'], guest: Partial<GuestInfo>) => ({
  state,
  guest: { ...emptyGuestInfo(), boots: 1, bootId: bootA, agent: 'responding' as const, ...guest },
});

test('nothing new while the boot count and the boot id stay', () => {
  assert.equal(rebootStage(before, seen('running', {})), 'not-seen');
  // The guest going down: its agent silent, no reset yet.
  assert.equal(rebootStage(before, seen('running', { agent: 'not-responding' })), 'not-seen');
});

test('a reset the host saw is a new boot; the reboot is back when the guest agent answers again', () => {
  assert.equal(
    rebootStage(before, seen('running', { boots: 2, bootId: null, agent: 'not-responding' })),
    'booted',
  );
  // A BIOS guest's second reset (its firmware's) is still the same reboot under way.
  assert.equal(
    rebootStage(before, seen('running', { boots: 3, bootId: null, agent: 'not-responding' })),
    'booted',
  );
  assert.equal(rebootStage(before, seen('running', { boots: 3, bootId: bootB })), 'back');
});

test('a new boot id is a new boot even when the host missed the reset (its agent was not running)', () => {
  assert.equal(rebootStage(before, seen('running', { bootId: bootB })), 'back');
  // A guest agent that tells no boot id (a Windows guest) proves nothing either way.
  assert.equal(rebootStage(before, seen('running', { bootId: null })), 'not-seen');
  assert.equal(rebootStage({ ...before, bootId: null }, seen('running', { bootId: bootB })), 'not-seen');
});

test('without a guest agent before, the new boot is enough', () => {
  const silent = { ...before, agent: false };
  assert.equal(rebootStage(silent, seen('running', { boots: 2, agent: 'not-responding' })), 'back');
});

test('out of sight is not an answer; stopped, crashed or missing ends the wait', () => {
  assert.equal(rebootStage(before, seen('unknown', { boots: 2 })), 'not-seen');
  assert.equal(rebootStage(before, seen('unreachable', { boots: 2 })), 'not-seen');
  for (const state of ['stopped', 'crashed', 'missing'] as const)
    assert.equal(rebootStage(before, seen(state, emptyGuestInfo())), 'ended', state);
});
