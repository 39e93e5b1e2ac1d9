import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { taskKinds } from './task-kinds.ts';

test('each task kind is built in task-kinds.ts under its own name', () => {
  // The builders only close over the services; nothing runs until a task does.
  const names = Object.values(taskKinds({} as never)).map((k) => k.kind);
  assert.equal(new Set(names).size, names.length, `duplicate kinds in ${names.join(', ')}`);
});

test('no route module registers a task kind (recovery must not depend on the HTTP wiring)', () => {
  const dir = path.join(import.meta.dirname, 'api');
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    const builds = /tasks\.register\(|\b(?!accept)\w+Task\(s[,)]/.exec(text);
    assert.equal(builds, null, `${file} builds or registers a task kind: ${builds?.[0]}`);
  }
});

test('the HA failover is a kind like every other: built here, registered by no other module', () => {
  const names = Object.values(taskKinds({} as never)).map((k) => k.kind);
  assert.ok(names.includes('ha.failover'), `no ha.failover in ${names.join(', ')}`);
  const dir = import.meta.dirname;
  const files = fs
    .readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'task-kinds.ts');
  for (const file of files) {
    const registers = /\b(?:tasks|engine)\.register\(/.exec(fs.readFileSync(path.join(dir, file), 'utf8'));
    assert.equal(registers, null, `${file} registers a task kind outside task-kinds.ts`);
  }
});
