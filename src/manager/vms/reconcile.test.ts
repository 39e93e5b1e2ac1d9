import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentVm } from '../../wire/agent.ts';
import { emptyGuestInfo } from '../../wire/vm.ts';
import { hostUnreachable, reconcileVm } from './reconcile.ts';

const reported = (state: AgentVm['state'], reason: string | null = null): AgentVm => ({
  id: '00000000-0000-4000-8000-000000000000',
  name: 'a',
  state,
  reason,
  pid: 1,
  vncPort: null,
  startedAt: null,
  guest: emptyGuestInfo(),
});

test('the host report decides', () => {
  assert.deepEqual(reconcileVm({ state: 'stopped', reason: null }, reported('running')), {
    state: 'running',
    reason: null,
  });
  assert.deepEqual(reconcileVm({ state: 'running', reason: null }, reported('crashed', 'boom')), {
    state: 'crashed',
    reason: 'boom',
  });
  assert.equal(reconcileVm({ state: 'running', reason: null }, reported('shutdown')).state, 'stopped');
  assert.equal(
    reconcileVm({ state: 'running', reason: null }, reported('paused', 'storage full')).reason,
    'storage full',
  );
});

test('a VM its host does not know is missing only if it should run', () => {
  assert.equal(reconcileVm({ state: 'running', reason: null }, null).state, 'missing');
  assert.equal(reconcileVm({ state: 'unknown', reason: 'x' }, null).state, 'missing');
  assert.equal(reconcileVm({ state: 'stopped', reason: null }, null).state, 'stopped');
  assert.equal(reconcileVm({ state: 'crashed', reason: 'y' }, null).state, 'crashed');
  assert.equal(reconcileVm({ state: 'creating', reason: null }, null).state, 'creating');
});

test('an unreachable host makes its running VMs unknown', () => {
  assert.equal(hostUnreachable({ state: 'running', reason: null }, 'refused').state, 'unknown');
  assert.equal(hostUnreachable({ state: 'stopped', reason: null }, 'refused').state, 'stopped');
});
