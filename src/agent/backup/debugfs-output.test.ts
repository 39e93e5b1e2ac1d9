import assert from 'node:assert/strict';
import { test } from 'node:test';
import { debugfsError, guestPath, parseLinkTarget, parseListing, parseStatType } from './debugfs-output.ts';

test('a listing keeps well-formed entries only, sorted, without . and ..', () => {
  const text = [
    '/2/040755/0/0/.//',
    '/2/040755/0/0/..//',
    '/12/100644/1000/1000/notes.txt/42/',
    '/13/120777/0/0/link//',
    '/14/040700/0/0/a dir with spaces//',
    'garbage line',
    `/15/100644/0/0/${'x'.repeat(300)}/1/`,
  ].join('\n');
  const { entries, truncated } = parseListing(text);
  assert.equal(truncated, false);
  assert.deepEqual(
    entries.map((e) => [e.name, e.type, e.mode, e.uid, e.size]),
    [
      ['a dir with spaces', 'directory', '0700', 0, 0],
      ['link', 'symlink', '0777', 0, 0],
      ['notes.txt', 'file', '0644', 1000, 42],
    ],
  );
  const many = Array.from({ length: 10_001 }, (_, i) => `/${i + 20}/100644/0/0/f${i}/1/`).join('\n');
  assert.equal(parseListing(many).truncated, true);
});

test('stat output gives the type and a short link target; errors are told apart from the banner', () => {
  assert.equal(parseStatType('Inode: 273   Type: symlink    Mode:  0777'), 'symlink');
  assert.equal(parseStatType('Inode: 12   Type: regular    Mode:  0644'), 'file');
  assert.equal(parseStatType(''), null);
  assert.equal(parseLinkTarget('Fast link dest: "../usr/lib/os-release"'), '../usr/lib/os-release');
  assert.equal(debugfsError('debugfs 1.47.0 (5-Feb-2023)\n', '/x'), null);
  assert.equal(debugfsError('debugfs 1.47.0\n/x: File not found by ext2_lookup \n', '/x')?.code, 'not_found');
  assert.equal(
    debugfsError('Bad magic number in super-block while opening filesystem', '/')?.code,
    'invalid_request',
  );
});

test('guest paths are absolute and normalised; quotes, newlines and relative paths are refused', () => {
  assert.equal(guestPath('/etc/../etc/./hostname'), '/etc/hostname');
  assert.equal(guestPath('/../..'), '/');
  for (const bad of ['etc/hostname', '/a"b', '/a\nb', '/a\\b', '']) assert.throws(() => guestPath(bad));
});
