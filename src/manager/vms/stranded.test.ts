import assert from 'node:assert/strict';
import { test } from 'node:test';
import { strandedCreations } from './stranded.ts';

test('only a creation no task ever named and no image-pool task makes is stranded', () => {
  const creating = [
    { id: 'a', name: 'web-1', imagePool: null },
    { id: 'b', name: 'web-2', imagePool: null },
    { id: 'c', name: 'desk-3', imagePool: 'desk' },
    { id: 'd', name: 'desk-v2', imagePool: null },
    { id: 'e', name: 'other-v2', imagePool: null },
  ];
  const stranded = strandedCreations(creating, (id) => id === 'b', new Set(['desk']));
  assert.deepEqual(
    stranded.map((v) => v.name),
    ['web-1', 'other-v2'],
  );
});
