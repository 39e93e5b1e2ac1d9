import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import type { Route } from '../route.ts';

const here = import.meta.dirname;
const src = path.join(here, '..', '..');

/** Every route declared in wire/api/, by the module that declares it. */
async function declared(): Promise<{ module: string; route: Route }[]> {
  const out: { module: string; route: Route }[] = [];
  for (const file of fs.readdirSync(here).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))) {
    const m = (await import(path.join(here, file))) as Record<string, unknown>;
    for (const [name, value] of Object.entries(m)) {
      if (!name.endsWith('Routes')) continue;
      for (const r of Object.values(value as Record<string, Route>)) out.push({ module: file, route: r });
    }
  }
  return out;
}

test('each API route is declared once', async () => {
  const keys = (await declared()).map(({ route }) => `${route.method} ${route.path}`);
  assert.ok(keys.length > 100, `${keys.length} routes declared`);
  const twice = keys.filter((k, i) => keys.indexOf(k) !== i);
  assert.deepEqual(twice, [], 'routes declared more than once');
});

test('no route path is written outside its declaration', () => {
  const found: string[] = [];
  for (const dir of ['manager/api', 'manager/auth', 'cli']) {
    for (const file of fs.readdirSync(path.join(src, dir), { recursive: true }) as string[]) {
      if (!file.endsWith('.ts') || file.endsWith('.test.ts')) continue;
      const text = fs.readFileSync(path.join(src, dir, file), 'utf8');
      for (const m of text.matchAll(/['`]\/api\/v1\/[a-z][^'`]*['`]/g)) found.push(`${dir}/${file}: ${m[0]}`);
    }
  }
  assert.deepEqual(found, [], 'route paths written by hand: call the declared route instead');
});
