/**
 * A wire type is declared once, here in src/wire/: the manager, the agent, the plumbing and the
 * CLI use it rather than spelling its shape again, so a field added to the contract reaches them
 * all (or fails to compile where it must be handled).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const src = path.resolve(import.meta.dirname, '..');
const declaration = /^\s*(export\s+)?(?:interface|type|const|enum|class)\s+([A-Z]\w*)\s*(?:=|<|\{|extends)/gm;

/** Same name, another concept: each says what it is beside the wire's. */
const homonyms = new Map([
  ['pki/ca.ts Role', "a certificate's role (manager or host), not a user's"],
  [
    'manager/placement/model.ts HostVerdict',
    "placement's verdict by host id; the wire's is its projection by name",
  ],
  ['cli/registry.ts Group', 'a group of CLI commands, not of users'],
  [
    'backup/datastore/datastore.ts Datastore',
    "the datastore's directory opened on a host; the wire's is the manager's record of it",
  ],
]);

/** [file, name] of each type or constant declared in `files`; `exported`: only what they export. */
function declared(files: string[], exported = false): [string, string][] {
  return files.flatMap((f) =>
    [...fs.readFileSync(path.join(src, f), 'utf8').matchAll(declaration)]
      .filter((m) => !exported || m[1])
      .map((m): [string, string] => [f, m[2]!]),
  );
}

test('no wire type is declared again outside src/wire', () => {
  const files = fs
    .readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  const wire = new Set(
    declared(
      files.filter((f) => f.startsWith('wire/')),
      true,
    ).map(([, name]) => name),
  );
  const again = declared(files.filter((f) => !f.startsWith('wire/')))
    .filter(([, name]) => wire.has(name))
    .map(([file, name]) => `${file} ${name}`);
  assert.deepEqual(
    again.filter((d) => !homonyms.has(d)),
    [],
  );
  for (const h of homonyms.keys()) assert.ok(again.includes(h), `${h} is gone: take it off the homonyms`);
});
