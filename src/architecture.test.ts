/**
 * The shape of the house: no file imports itself back through others, no folder loops back to
 * itself through other folders, and nothing imports upward (wire/ is the contract everything
 * speaks; http/ and pki/ are plumbing; agent/ and manager/ never reach into the CLI). Type-only
 * imports count too: a loop of types is a loop of concepts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const src = path.dirname(new URL(import.meta.url).pathname);

/** Source file (relative to src/, tests left out) → the source files it imports. */
function importGraph(): Map<string, Set<string>> {
  const files = fs
    .readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
  const graph = new Map<string, Set<string>>();
  for (const file of files) {
    const text = fs.readFileSync(path.join(src, file), 'utf8');
    const deps = new Set<string>();
    for (const m of text.matchAll(/^\s*(?:import|export)\s+[^;]*?from\s+'(\.[^']+)'/gms)) {
      const target = path.relative(src, path.resolve(src, path.dirname(file), m[1]!));
      if (fs.existsSync(path.join(src, target))) deps.add(target);
    }
    graph.set(file, deps);
  }
  return graph;
}

/** The strongly connected components with more than one member (Tarjan). */
function cycles(graph: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const scc: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      scc.push(w);
    } while (w !== v);
    if (scc.length > 1) found.push(scc.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

/** Folder → folders its files import from; a folder using its own subfolders is no edge. */
function folderGraph(files: ReadonlyMap<string, ReadonlySet<string>>): Map<string, Set<string>> {
  const folders = new Map<string, Set<string>>();
  for (const [file, deps] of files) {
    const from = path.dirname(file);
    if (!folders.has(from)) folders.set(from, new Set());
    for (const dep of deps) {
      const to = path.dirname(dep);
      if (!folders.has(to)) folders.set(to, new Set());
      if (to !== from && !to.startsWith(`${from}/`)) folders.get(from)!.add(to);
    }
  }
  return folders;
}

const graph = importGraph();

test('no source file imports itself back through other files', () => {
  assert.deepEqual(cycles(graph), []);
});

test('no folder imports itself back through other folders', () => {
  assert.deepEqual(cycles(folderGraph(graph)), []);
});

/** Folders (and what is under them) and the folders they must never import. */
const below: [string, string[]][] = [
  ['wire', ['http', 'pki', 'ha', 'agent', 'manager', 'allinone', 'cli']],
  ['http', ['agent', 'manager', 'allinone', 'cli']],
  ['pki', ['agent', 'manager', 'allinone', 'cli']],
  ['ha', ['agent', 'manager', 'allinone', 'cli']],
  ['backup', ['agent', 'manager', 'allinone', 'cli']],
  ['agent', ['manager', 'allinone', 'cli']],
  ['manager', ['allinone', 'cli']],
];

test('nothing imports upward: wire, plumbing, agent and manager never import the layers above', () => {
  const inside = (file: string, folder: string) => file === folder || file.startsWith(`${folder}/`);
  const upward: string[] = [];
  for (const [file, deps] of graph) {
    for (const [folder, forbidden] of below) {
      if (!inside(file, folder)) continue;
      for (const dep of deps) if (forbidden.some((f) => inside(dep, f))) upward.push(`${file} -> ${dep}`);
    }
  }
  assert.deepEqual(upward, []);
});

test('the checks see a loop when there is one', () => {
  const g = new Map([
    ['a/x.ts', new Set(['b/y.ts'])],
    ['b/y.ts', new Set(['a/z.ts'])],
    ['a/z.ts', new Set<string>()],
  ]);
  assert.deepEqual(cycles(g), []);
  assert.deepEqual(cycles(folderGraph(g)), [['a', 'b']]);
  g.get('a/z.ts')!.add('a/x.ts');
  assert.deepEqual(cycles(g), [['a/x.ts', 'a/z.ts', 'b/y.ts']]);
});
