import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Firmware } from '../wire/vm.ts';
import { decimal, oneOf, wordsOf } from './flags.ts';

test('a word flag is one of the words the API takes, else the error lists them', () => {
  assert.equal(oneOf('pack', ['spread', 'pack'], '--strategy'), 'pack');
  assert.throws(() => oneOf('tight', ['spread', 'pack'], '--strategy'), {
    code: 'invalid_request',
    message: '--strategy is spread or pack',
  });
  assert.throws(
    () => oneOf('x', ['ok', 'denied', 'failed'], '--result'),
    /--result is ok, denied or failed$/,
  );
  assert.throws(() => oneOf('x', ['a', 'b', 'c', 'd', 'e'], '--kind'), /--kind is one of a, b, c, d, e$/);
});

test('a number flag is a finite number, else the error names the flag and the value', () => {
  assert.equal(decimal('1.5', '--cpu-overcommit'), 1.5);
  assert.equal(decimal('4', '--cpu-overcommit'), 4);
  for (const bad of ['', ' ', 'lots', '1.5x', 'Infinity'])
    assert.throws(() => decimal(bad, '--cpu-overcommit'), {
      code: 'invalid_request',
      message: `--cpu-overcommit is a number, e.g. 1.5; got "${bad}"`,
    });
});

test('the words of a flag come from the union the wire declares', () => {
  assert.deepEqual(wordsOf(Firmware), ['bios', 'uefi']);
  assert.throws(() => oneOf('efi', wordsOf(Firmware), '--firmware'), /--firmware is bios or uefi/);
});
