import assert from 'node:assert/strict';
import { test } from 'node:test';
import { factsOf, type PrimarySide } from './primary-facts.ts';

const side = (s: Partial<PrimarySide>): PrimarySide => ({
  vmName: 'web',
  hasHost: true,
  haHealth: 'healthy',
  hostOnline: true,
  protectsVm: false,
  reported: { state: 'running' },
  ...s,
});

test('a failed host is fenced only for a VM it confirmed it protects: its fence kills only those', () => {
  assert.equal(factsOf(side({ haHealth: 'failed', protectsVm: true, reported: undefined })).host, 'fenced');
  assert.equal(factsOf(side({ haHealth: 'failed', protectsVm: false, reported: undefined })).host, 'silent');
});

test('a host offline, or one that does not answer, is silent and says nothing of the VM', () => {
  assert.deepEqual(factsOf(side({ hostOnline: false, reported: undefined })), {
    vmName: 'web',
    vm: 'unknown',
    host: 'silent',
  });
  assert.deepEqual(factsOf(side({ reported: undefined })), { vmName: 'web', vm: 'unknown', host: 'silent' });
});

test('an answering host tells the VM: running, paused, stopped (also crashed or not there)', () => {
  assert.equal(factsOf(side({ reported: { state: 'running' } })).vm, 'running');
  assert.equal(factsOf(side({ reported: { state: 'paused' } })).vm, 'paused');
  assert.equal(factsOf(side({ reported: { state: 'crashed' } })).vm, 'stopped');
  assert.equal(factsOf(side({ reported: null })).vm, 'stopped');
  assert.equal(factsOf(side({ hasHost: false, reported: null })).vm, 'stopped');
});
