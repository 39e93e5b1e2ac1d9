import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { rootCause, TernError } from './errors.ts';
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
