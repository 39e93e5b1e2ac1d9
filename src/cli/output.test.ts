import assert from 'node:assert/strict';
import { test } from 'node:test';
import { printable, printFields, printJson, printTable, printText } from './output.ts';

/** What `print` wrote to stdout. */
function captured(print: () => void): string {
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((chunk: string) => {
    out += chunk;
    return true;
  }) as typeof process.stdout.write;
  try {
    print();
  } finally {
    process.stdout.write = write;
  }
  return out;
}

/** Any character a terminal would act on rather than show. */
const raw = (s: string) => [...s].some((c) => /[\p{Cc}\u202e]/u.test(c) && c !== '\n');

// A name that clears the screen, retitles the terminal and hides what follows it.
const hostile = 'db\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil';

test('control characters are written out, never sent to the terminal', () => {
  assert.equal(printable(hostile), 'db\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u{202e}evil');
  assert.equal(printable('line 1\r\nline 2\ttab\n'), 'line 1\nline 2\ttab\n', 'line endings and tabs stay');
  assert.equal(printable('a\nb\rc', true), 'a\\x0ab\\x0dc', 'a table cell stays one line');
});

test('tables, fields and text show no raw control character', () => {
  const out = [
    captured(() => printTable(['NAME', 'KIND'], [[hostile, 'password']])),
    captured(() => printFields([['name', hostile]])),
    captured(() => printText(`secret ${hostile} deleted\n`)),
  ].join('');
  assert.equal(raw(out), false, out);
  assert.match(out, /^db\\x1b\[2J/m);
});

test('JSON keeps the exact string, with every control character escaped', () => {
  const out = captured(() => printJson({ name: hostile }));
  assert.equal(raw(out), false, out);
  assert.equal((JSON.parse(out) as { name: string }).name, hostile);
});
