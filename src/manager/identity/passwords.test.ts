import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashPassword, verifyPassword } from './passwords.ts';

test('a password verifies against its hash and nothing else does', async () => {
  const h = await hashPassword('correct horse battery');
  assert.match(h, /^scrypt\$32768\$8\$1\$/);
  assert.equal(await verifyPassword('correct horse battery', h), true);
  assert.equal(await verifyPassword('correct horse batterY', h), false);
  assert.notEqual(await hashPassword('correct horse battery'), h, 'salted');
});

test('a malformed or hostile stored hash never matches and never throws', async () => {
  for (const bad of [
    '',
    'scrypt$1$2',
    'bcrypt$x$y$z$a$b',
    'scrypt$1073741824$8$1$AAAA$AAAA',
    'scrypt$32768$8$1$AA$AA',
  ])
    assert.equal(await verifyPassword('whatever-password', bad), false);
});

test('short passwords are refused with the rule', async () => {
  await assert.rejects(hashPassword('short'), /at least 10 characters/);
});
