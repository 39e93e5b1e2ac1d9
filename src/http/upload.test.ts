import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { sendUpload } from './upload.ts';

test('an upload arrives as announced: octet-stream, its length, every byte, the caller headers kept', async () => {
  const seen: { headers: http.IncomingHttpHeaders; bytes: Buffer }[] = [];
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    seen.push({ headers: req.headers, bytes: Buffer.concat(chunks) });
    res.end('{"ok":true}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const parts = [Buffer.from('first part, '), Buffer.from('second part')];
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        const next = parts.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    });
    const { port } = server.address() as AddressInfo;
    const res = await sendUpload(fetch, `http://127.0.0.1:${port}/up`, {
      method: 'PUT',
      headers: { authorization: 'Bearer t' },
      body,
      length: 23,
    });
    assert.deepEqual(await res.json(), { ok: true });
    assert.equal(seen[0]!.bytes.toString(), 'first part, second part');
    assert.equal(seen[0]!.headers['content-type'], 'application/octet-stream');
    assert.equal(seen[0]!.headers['content-length'], '23');
    assert.equal(seen[0]!.headers.authorization, 'Bearer t');
  } finally {
    server.close();
  }
});

test('the streamed upload is written once: no other source file streams a request body itself', () => {
  const src = path.resolve(import.meta.dirname, '..');
  const streaming = fs
    .readdirSync(src, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts') && f !== path.join('http', 'upload.ts'))
    .filter((f) => /duplex:\s*'half'/.test(fs.readFileSync(path.join(src, f), 'utf8')));
  assert.deepEqual(streaming, []);
});
