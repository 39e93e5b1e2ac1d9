import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { TernError } from '../errors.ts';
import { helpFor } from './commands/help.ts';
import { registry } from './commands/index.ts';
import { completionScript } from './completion.ts';
import { commandFlags } from './registry.ts';
import { editDistance, nearest } from './suggest.ts';

test('each command is declared once, with flags that exist and a summary', () => {
  const paths = registry.commands.map((c) => c.path);
  assert.equal(new Set(paths).size, paths.length, 'a command path declared twice');
  for (const c of registry.commands) {
    assert.ok(c.summary, `${c.path} has no summary`);
    for (const [name, spec] of commandFlags(c)) assert.ok(spec?.help, `${c.path} --${name} has no help`);
  }
  for (const g of registry.groups)
    assert.ok(
      paths.some((p) => p.startsWith(`${g.name} `)),
      `group ${g.name} has no command`,
    );
});

test('edit distance and the nearest words', () => {
  assert.equal(editDistance('list', 'list'), 0);
  assert.equal(editDistance('lsit', 'list'), 1);
  assert.equal(editDistance('templte', 'template'), 1);
  assert.deepEqual(nearest('lst', ['list', 'show', 'start']), ['list']);
  assert.deepEqual(nearest('cr', ['create', 'delete']), ['create']);
  assert.deepEqual(nearest('zzzzzz', ['create', 'delete']), []);
});

test('help: all commands, a group, a command with its flags', () => {
  const all = helpFor(registry, []);
  for (const c of registry.commands) assert.ok(all.includes(`tern ${c.path}`), `tern help misses ${c.path}`);
  const vm = helpFor(registry, ['vm']);
  assert.match(vm, /tern vm create NAME\.\.\. +create VMs/);
  assert.doesNotMatch(vm, /tern host list/);
  const create = helpFor(registry, ['vm', 'create']);
  assert.match(create, /^usage: tern vm create NAME\.\.\. \[flags\]\n/);
  assert.match(create, /--iso ISO +a library ISO in the CD-ROM/);
  assert.match(
    create,
    /--nic user\|bridge:BR\|NETWORK\[,ip=IP\]\[,mac=MAC\]\[,group=G\]\n +a network card: user networking, a host bridge, or a managed network \(repeatable\)/,
  );
  assert.match(create, /-o, --output table\|json/);
  assert.doesNotMatch(create, /--path/);
  assert.match(helpFor(registry, ['image', 'import']), /--iso +the file is an ISO/);
  assert.throws(
    () => helpFor(registry, ['vm', 'lst']),
    (e: unknown) => e instanceof TernError && /did you mean tern vm list/.test(e.message),
  );
});

test('completion scripts name every command and flag; bash completes words and flags', () => {
  const bash = completionScript(registry, 'bash');
  const zsh = completionScript(registry, 'zsh');
  for (const script of [bash, zsh]) {
    for (const c of registry.commands) assert.ok(script.includes(`'${c.path}')`), c.path);
    assert.ok(script.includes('--template'));
  }
  assert.throws(() => completionScript(registry, 'fish'), TernError);
  const complete = (...line: string[]) => {
    const r = spawnSync(
      'bash',
      [
        '-c',
        `eval "$SCRIPT"; COMP_WORDS=(${line.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${line.length - 1}; _tern; echo "\${COMPREPLY[*]}"`,
      ],
      { encoding: 'utf8', env: { ...process.env, SCRIPT: bash } },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.trim().split(' ').filter(Boolean);
  };
  assert.deepEqual(complete('tern', 'v'), ['vm']);
  assert.deepEqual(complete('tern', 'vm', 'cr'), ['create']);
  assert.deepEqual(complete('tern', 'vm', 'disk', 're'), ['remove', 'resize']);
  assert.deepEqual(complete('tern', 'vm', 'create', 'x', '--template', 'tiny', '--ne'), []);
  assert.deepEqual(complete('tern', 'vm', 'create', 'x', '--template', 'tiny', '--ni'), ['--nic']);
  assert.deepEqual(complete('tern', 'image', 'import', '--is'), ['--iso']);
});
