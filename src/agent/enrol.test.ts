import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { createLogger } from '../log.ts';
import { heartbeat } from './enrol.ts';

const log = createLogger('enrol-test', 'silent');

test('a manager slower to answer than one heartbeat period still hands the host its answers', async () => {
  const periodMs = 200;
  // Answers 1.5 periods late, as a busy manager does.
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () =>
      setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ host: 'h1', state: 'online' }));
      }, periodMs * 1.5),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const answered: number[] = [];
  let enough: () => void;
  const got = new Promise<void>((resolve) => {
    enough = resolve;
  });
  const stop = heartbeat(
    { identity: { key: '', cert: '', ca: '' }, manager: `http://127.0.0.1:${port}` },
    periodMs,
    log,
    (_reply, sentAtMs) => {
      answered.push(sentAtMs);
      if (answered.length >= 3) enough();
    },
  );
  try {
    const bound = new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${answered.length} answers within 5 s`)), 5_000).unref(),
    );
    await Promise.race([got, bound]);
  } finally {
    await stop();
    server.closeAllConnections();
    server.close();
  }
  assert.ok(answered.length >= 3);
});

test('an agent that stops does not wait for the answer to a beat in flight', async () => {
  const server = http.createServer((req) => req.resume()); // never answers
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  let arrived: () => void;
  const beat = new Promise<void>((resolve) => {
    arrived = resolve;
  });
  server.on('request', () => arrived());
  const stop = heartbeat(
    { identity: { key: '', cert: '', ca: '' }, manager: `http://127.0.0.1:${port}` },
    1_000,
    log,
  );
  try {
    await beat;
    const t0 = performance.now();
    await stop();
    assert.ok(performance.now() - t0 < 1_000, `stopped in ${Math.round(performance.now() - t0)} ms`);
  } finally {
    server.closeAllConnections();
    server.close();
  }
});
