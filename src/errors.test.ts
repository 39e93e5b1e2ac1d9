import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { rootCause, TernError, unreachable } from './errors.ts';
import { requestJson } from './http/json-client.ts';

test('a refused connection says why, and the error keeps what it explains', async () => {
  // A port nobody listens on: fetch fails with a bare "fetch failed" around ECONNREFUSED.
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise((r) => srv.close(r));
  const err = await requestJson(`http://127.0.0.1:${port}/`, {
    method: 'GET',
    headers: {},
    timeoutMs: 5_000,
    unreachable: (why) => `nobody at ${port}: ${why}`,
    peer: 'test',
  }).catch((e: unknown) => e);
  assert.ok(err instanceof TernError);
  assert.equal(err.code, 'unavailable');
  assert.match(err.message, /ECONNREFUSED/);
  assert.ok(err.cause instanceof Error, 'the network error is kept as the cause');
  assert.match(rootCause(err.cause).message, /ECONNREFUSED/);
});

test('rootCause: the error under a wrapper, else the error itself', () => {
  const under = new Error('connect ECONNREFUSED');
  assert.equal(rootCause(new TypeError('fetch failed', { cause: under })), under);
  const plain = new Error('plain');
  assert.equal(rootCause(plain), plain);
  assert.equal(rootCause('a string').message, 'a string');
});

test('unreachable: unavailable, the peer named with the first line of what lies under, the error kept', () => {
  const under = new Error('connect ECONNREFUSED 10.0.0.1:389\n    at somewhere');
  const wrapped = new TypeError('fetch failed', { cause: under });
  const err = unreachable(wrapped, (why) => `the directory did not answer: ${why}`);
  assert.equal(err.code, 'unavailable');
  assert.equal(err.message, 'the directory did not answer: connect ECONNREFUSED 10.0.0.1:389');
  assert.equal(err.cause, wrapped);
  const already = new TernError('forbidden', 'refused');
  assert.equal(
    unreachable(already, () => 'never used'),
    already,
  );
});

test('one way to say a peer is unreachable: no other module writes its own unreachable()', () => {
  const src = import.meta.dirname;
  const own = fs
    .readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== 'errors.ts')
    .filter((f) => /function unreachable\b/.test(fs.readFileSync(path.join(src, f), 'utf8')));
  assert.deepEqual(own, []);
});
