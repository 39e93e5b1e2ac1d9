/** Assertions shared by unit tests. */
import assert from 'node:assert/strict';
import { TernError } from './errors.ts';

/** Asserts that `p` rejects with a TernError of `code` (and a message matching `message`). */
export async function rejectsWith(p: Promise<unknown>, code: string, message?: RegExp): Promise<TernError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TernError, `expected a TernError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return err;
  }
  assert.fail(`expected a rejection with ${code}`);
}
