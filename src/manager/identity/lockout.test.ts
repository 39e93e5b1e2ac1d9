import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultLockoutPolicy, Lockout } from './lockout.ts';

function clock() {
  let t = 1_000_000;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

const guess = (l: Lockout, name: string, address: string, outcome: 'ok' | 'wrong' = 'wrong') => {
  l.begin(name, address);
  l.end(name, address, outcome);
};

test('five wrong passwords lock the name from that address only', () => {
  const c = clock();
  const l = new Lockout(defaultLockoutPolicy, c.now);
  for (let i = 0; i < 5; i++) {
    assert.equal(l.wait('admin', '203.0.113.9'), 0);
    guess(l, 'admin', '203.0.113.9');
  }
  assert.equal(l.wait('admin', '203.0.113.9'), 60_000);
  assert.equal(l.wait('admin', '10.0.0.2'), 0, 'the real admin, elsewhere, is not locked out');
  assert.equal(l.wait('bob', '203.0.113.9'), 0, 'nor is another name');
});

test('each further lock while the guessing goes on lasts twice as long, up to an hour', () => {
  const c = clock();
  const l = new Lockout(defaultLockoutPolicy, c.now);
  const locks: number[] = [];
  for (let round = 0; round < 8; round++) {
    for (let i = 0; i < 5; i++) guess(l, 'admin', '203.0.113.9');
    locks.push(l.wait('admin', '203.0.113.9'));
    c.advance(l.wait('admin', '203.0.113.9'));
  }
  assert.deepEqual(
    locks.map((ms) => ms / 60_000),
    [1, 2, 4, 8, 16, 32, 60, 60],
  );
  // A success from that address forgives it.
  guess(l, 'admin', '203.0.113.9', 'ok');
  for (let i = 0; i < 5; i++) guess(l, 'admin', '203.0.113.9');
  assert.equal(l.wait('admin', '203.0.113.9'), 60_000);
});

test('many addresses guessing one name lock it from strangers, never from where its user logs in', () => {
  const c = clock();
  const l = new Lockout(defaultLockoutPolicy, c.now);
  guess(l, 'admin', '10.0.0.2', 'ok');
  for (let a = 1; a <= 5; a++) for (let i = 0; i < 4; i++) guess(l, 'admin', `198.51.100.${a}`);
  assert.equal(l.wait('admin', '198.51.100.99'), 60_000, 'a new address meets the lock');
  assert.equal(l.wait('admin', '10.0.0.2'), 0, 'the user’s own address does not');
  // And wrong passwords typed there by the user count only there.
  for (let i = 0; i < 4; i++) guess(l, 'admin', '10.0.0.2');
  assert.equal(l.wait('admin', '10.0.0.2'), 0);
});

test('guesses being checked count before their answers', () => {
  const c = clock();
  const l = new Lockout(defaultLockoutPolicy, c.now);
  for (let i = 0; i < 5; i++) l.begin('admin', '203.0.113.9');
  assert.ok(l.wait('admin', '203.0.113.9') > 0);
  for (let i = 0; i < 5; i++) l.end('admin', '203.0.113.9', 'error');
  assert.equal(l.wait('admin', '203.0.113.9'), 0, 'a check that failed on its own counts for nothing');
});
