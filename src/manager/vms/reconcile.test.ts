import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AgentVm } from '../../wire/agent.ts';
import { emptyGuestInfo } from '../../wire/vm.ts';
import { adoptsAsVm, findOrphans, hostUnreachable, reconcileVm } from './reconcile.ts';

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
  assert.equal(
    reconcileVm({ state: 'running', reason: null }, reported('running', 'disk image corrupt: disk 0')).reason,
    'disk image corrupt: disk 0',
  );
  assert.deepEqual(reconcileVm({ state: 'running', reason: null }, reported('crashed', 'boom')), {
    state: 'crashed',
    reason: 'boom',
  });
  assert.equal(reconcileVm({ state: 'running', reason: null }, reported('shutdown')).state, 'stopped');
  assert.deepEqual(
    reconcileVm({ state: 'running', reason: null }, reported('unreachable', 'its monitor does not answer')),
    { state: 'unreachable', reason: 'its monitor does not answer' },
  );
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
  assert.equal(hostUnreachable({ state: 'unreachable', reason: 'x' }, 'refused').state, 'unknown');
  assert.equal(hostUnreachable({ state: 'stopped', reason: null }, 'refused').state, 'stopped');
});

test('orphans: what a host holds for VMs the inventory does not know, unless kept', () => {
  const known = '00000000-0000-4000-8000-00000000000a';
  const lost = '00000000-0000-4000-8000-00000000000b';
  const halfMade = '00000000-0000-4000-8000-00000000000c';
  const keptDisk = '00000000-0000-4000-8000-00000000000d';
  const dir = (id: string, ...files: string[]) => ({
    pool: 'local',
    id,
    files: files.map((f) => ({ path: `vms/${id}/${f}`, bytes: 10 })),
  });
  const orphans = findOrphans(
    'h1',
    [
      { ...reported('running'), id: known },
      { ...reported('running'), id: lost, name: 'ghost', pid: 42 },
    ],
    [
      // A known VM's directory may hold more than its spec names (a disk being moved).
      dir(known, 'disk0.qcow2', 'disk0-moving.qcow2'),
      dir(lost, 'disk0.qcow2', 'seed.iso'),
      dir(halfMade, 'disk0.qcow2.partial'),
      dir(keptDisk, 'disk0.qcow2'),
    ],
    new Set([known]),
    new Set([`local:vms/${keptDisk}/disk0.qcow2`]),
  );
  assert.deepEqual(
    orphans.map((o) => [o.id, o.name, o.qemu?.state ?? null, o.volumes.map((v) => v.path.split('/')[2])]),
    [
      [lost, 'ghost', 'running', ['disk0.qcow2', 'seed.iso']],
      [halfMade, null, null, ['disk0.qcow2.partial']],
    ],
  );
  assert.equal(orphans[0].host, 'h1');
  assert.equal(adoptsAsVm(orphans[0]), true, 'a running orphan is adopted as a VM');
  assert.equal(adoptsAsVm(orphans[1]), false, 'volumes alone are adopted as kept disks');
  assert.deepEqual(findOrphans('h1', [], [dir(known, 'disk0.qcow2')], new Set([known]), new Set()), []);
});
