import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type SelectableVm, selectVms } from './selection.ts';

const inventory: SelectableVm[] = [
  { id: 'a', name: 'web-2', project: 'shop', groups: ['web'] },
  { id: 'b', name: 'web-1', project: 'shop', groups: ['web'] },
  { id: 'c', name: 'db-1', project: 'shop', groups: [] },
  { id: 'd', name: 'ci-1', project: 'build', groups: ['ci'] },
  { id: 'e', name: 'lone', project: null, groups: [] },
];
const exists = { groups: new Set(['web', 'ci', 'empty']), projects: new Set(['shop', 'build', 'lab']) };
const names = (s: { vms: SelectableVm[] }) => s.vms.map((v) => v.name);

test('named VMs, groups and projects add up, each VM once, by name', () => {
  const s = selectVms({ vms: ['e', 'b'], groups: ['web'], projects: ['build'] }, inventory, exists);
  assert.deepEqual(names(s), ['ci-1', 'lone', 'web-1', 'web-2']);
  assert.deepEqual(s.missing, []);
  assert.deepEqual(names(selectVms({ vms: [], groups: [], projects: ['shop'] }, inventory, exists)), [
    'db-1',
    'web-1',
    'web-2',
  ]);
});

test('an empty group or project selects nothing and is not missing', () => {
  const s = selectVms({ vms: [], groups: ['empty'], projects: ['lab'] }, inventory, exists);
  assert.deepEqual(s, { vms: [], missing: [] });
});

test('a deleted VM, group or project is reported missing, the rest still selected', () => {
  const s = selectVms({ vms: ['gone', 'c'], groups: ['old'], projects: ['closed'] }, inventory, exists);
  assert.deepEqual(names(s), ['db-1']);
  assert.deepEqual(s.missing, [
    'VM gone no longer exists',
    'placement group old no longer exists',
    'project closed no longer exists',
  ]);
});
