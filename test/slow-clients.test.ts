/**
 * Slow clients: a request body that trickles in is cut, and what it held (an upload holds its
 * image name) is let go. The paces are shortened here; their defaults are in http/body-pace.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import tls from 'node:tls';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
before(async () => {
  c = await startSimCluster(1);
  c.manager.services.bodyPaces = {
    // A byte every 200 ms keeps this pace: only the deadline cuts a JSON body here.
    json: { minBytes: 1, windowMs: 500, deadlineMs: 1500 },
    upload: { minBytes: 1024, windowMs: 500, deadlineMs: null },
  };
});
after(async () => {
  await c?.close();
});

/**
 * Sends the head of a request and then its body one byte every 200 ms; resolves with how long
 * the manager kept the connection open, and what it answered if anything.
 */
function trickle(
  method: string,
  path: string,
  headers: Record<string, string>,
  length: number,
  limitMs: number,
) {
  const url = new URL(c.manager.url);
  return new Promise<{ heldMs: number; answer: string }>((resolve, reject) => {
    const started = Date.now();
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port),
      ca: fs.readFileSync(c.api.caFile, 'utf8'),
    });
    let answer = '';
    const drip = setInterval(() => socket.write('x'), 200);
    const limit = setTimeout(() => {
      finish();
      reject(new Error(`the manager still held the trickling request after ${limitMs} ms`));
    }, limitMs);
    const finish = () => {
      clearInterval(drip);
      clearTimeout(limit);
      socket.destroy();
    };
    socket.on('data', (d: Buffer) => {
      answer += d.toString();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      finish();
      resolve({ heldMs: Date.now() - started, answer });
    });
    socket.on('secureConnect', () => {
      const head = Object.entries({ ...headers, host: url.host, 'content-length': String(length) })
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('');
      socket.write(`${method} ${path} HTTP/1.1\r\n${head}\r\n`);
    });
  });
}

test('an upload trickled in is cut, and its image name is free again', async () => {
  const auth = { authorization: `Bearer ${c.api.token}` };
  const r = await trickle(
    'PUT',
    '/api/v1/images/trickled',
    { ...auth, 'content-type': 'application/octet-stream' },
    1024 * 1024,
    10_000,
  );
  assert.ok(r.heldMs < 5000, `held for ${r.heldMs} ms`);
  // The name is no longer held by the cut upload.
  const body = Buffer.alloc(64 * 1024, 1);
  const res = await c.api.fetch(`${c.manager.url}/api/v1/images/trickled?format=raw`, {
    method: 'PUT',
    headers: { ...auth, 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
    body,
  });
  const text = await res.text();
  assert.equal(res.status, 202, text);
});

test('a JSON body that does not arrive within its deadline is cut', async () => {
  const r = await trickle(
    'POST',
    '/api/v1/vms',
    { authorization: `Bearer ${c.api.token}`, 'content-type': 'application/json' },
    4000,
    10_000,
  );
  assert.ok(r.heldMs >= 1400 && r.heldMs < 5000, `held for ${r.heldMs} ms`);
});
