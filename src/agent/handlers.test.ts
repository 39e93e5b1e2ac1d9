import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import Fastify from 'fastify';
import { registerRoutes, unmatched } from '../http/declared-routes.ts';
import { agentRoutes } from '../wire/agent-routes.ts';
import { pathOf } from '../wire/route.ts';
import type { HypervisorDriver } from './driver.ts';
import { agentHandlers } from './handlers.ts';

const handlers = () => agentHandlers({ driver: {} as HypervisorDriver, pools: new Map() as never });

test('every declared agent route has a handler, and every handler a declared route', () => {
  assert.deepEqual(unmatched(agentRoutes, handlers()), { unhandled: [], undeclared: [] });
});

test('a server whose handlers and declarations differ does not start', () => {
  const { vmDirs: _, ...missing } = handlers();
  assert.throws(
    () => registerRoutes(Fastify(), agentRoutes, missing as never),
    /no handler for \[vmDirs\], no route for \[\]/,
  );
  assert.throws(
    () => registerRoutes(Fastify(), agentRoutes, { ...handlers(), stray: async () => ({}) } as never),
    /no handler for \[\], no route for \[stray\]/,
  );
});

test('the agent registers exactly the declared routes', async () => {
  const app = Fastify();
  const seen: string[] = [];
  app.addHook('onRoute', (r) => {
    if (r.method !== 'HEAD') seen.push(`${r.method} ${r.url}`);
  });
  registerRoutes(app, agentRoutes, handlers());
  await app.ready();
  const declared = Object.values(agentRoutes).map((r) => `${r.method} ${r.path}`);
  assert.deepEqual(seen.sort(), declared.sort());
  assert.equal(new Set(declared).size, declared.length, 'no route is declared twice');
});

test('docs/agent-protocol.md lists every declared route, and no other', () => {
  const doc = fs.readFileSync(new URL('../../docs/agent-protocol.md', import.meta.url), 'utf8');
  const documented = [...doc.matchAll(/^\| `(GET|PUT|POST|DELETE) (\/agent\/v1\/[^`?]*)[^`]*` *\|/gm)].map(
    ([, method, path]) => `${method} ${path.replace(/\{(\w+)\}/g, ':$1')}`,
  );
  const declared = Object.values(agentRoutes).map((r) => `${r.method} ${r.path}`);
  assert.deepEqual(documented.sort(), declared.sort());
});

test('a path is filled from its parameters, each one encoded', () => {
  assert.equal(
    pathOf(agentRoutes.deleteVmSnapshot, { id: 'a1', name: 'x y/z' }),
    '/agent/v1/vms/a1/snapshots/x%20y%2Fz',
  );
});
