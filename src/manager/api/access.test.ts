import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { requireAccess } from './access.ts';
import type { App } from './context.ts';

test('a route that does not declare its access is refused; declared ones are collected', async () => {
  const app = Fastify() as unknown as App;
  const { access } = requireAccess(app);
  app.get('/api/v1/things', { config: { access: 'vm.read' } }, async () => ({}));
  app.post('/api/v1/open', { config: { access: 'public' } }, async () => ({}));
  assert.throws(
    () => app.delete('/api/v1/things/:id', async () => ({})),
    /DELETE \/api\/v1\/things\/:id does not declare its access/,
  );
  assert.deepEqual(
    [...access],
    [
      ['GET /api/v1/things', 'vm.read'],
      ['POST /api/v1/open', 'public'],
    ],
  );
  await app.close();
});
