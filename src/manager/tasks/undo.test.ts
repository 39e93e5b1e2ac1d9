import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TernError } from '../../errors.ts';
import { Undo } from './undo.ts';

test('an undo tries every step and then fails once, naming each step that failed', async () => {
  const undo = new Undo();
  const done: string[] = [];
  await undo.step('remove a', async () => {
    throw new TernError('unavailable', 'host h1 is offline');
  });
  await undo.step('remove b', async () => {
    done.push('b');
  });
  await undo.step('remove c', async () => {
    throw new Error('disk busy');
  });
  assert.deepEqual(done, ['b']);
  assert.throws(
    () => undo.done(),
    (err: TernError) =>
      err.code === 'unavailable' &&
      err.message === 'could not remove a: host h1 is offline; could not remove c: disk busy',
  );
});

test('an undo whose steps all succeeded does not throw', async () => {
  const undo = new Undo();
  await undo.step('remove a', async () => {});
  undo.done();
});
