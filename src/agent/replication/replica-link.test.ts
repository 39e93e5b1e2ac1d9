/**
 * The link to the replica's host over real mutual TLS: this host's certificate presented, the
 * body pulled only as the connection takes it (a replica's host that stops reading stops the
 * sender, a few MiB at most in between), the ticket as a bearer token, and an answer refusing
 * the stream (a wrong ticket) returned at once as the replica's error.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { TernError } from '../../errors.ts';
import { ClusterCa } from '../../pki/ca.ts';
import { type Identity, newKeyPair, peerOf } from '../../pki/identity.ts';
import type { ReceiveResult } from '../../wire/replication.ts';
import { replicaLink } from './replica-link.ts';

const M = 1024 * 1024;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-replica-link-'));
let server: https.Server;
let url: string;
let self: Identity;
/** What the test server does with a request. */
let handle: (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;

async function hostIdentity(ca: ClusterCa, name: string): Promise<Identity> {
  const { privateKeyPem, publicKeyPem } = newKeyPair();
  const cert = await ca.issue(name, 'tern-host', publicKeyPem, ['127.0.0.1']);
  return { key: privateKeyPem, cert: cert.pem, ca: ca.certPem };
}

before(async () => {
  const ca = await ClusterCa.open(dir);
  self = await hostIdentity(ca, 'primary');
  const replica = await hostIdentity(ca, 'replica');
  server = https.createServer(
    { key: replica.key, cert: replica.cert, ca: replica.ca, requestCert: true, rejectUnauthorized: true },
    (req, res) => handle(req, res),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/agent/v1/replicas/x/receive`;
});
after(() => {
  server.closeAllConnections();
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const target = () => ({ url, ticket: 't'.repeat(43), ca: null, resume: [] });
const answer: ReceiveResult = {
  point: '2026-12-07T18-00-00Z',
  takenAt: '2026-12-07T18:00:00.000Z',
  consistency: 'crash',
  writtenBytes: 0,
  streamBytes: 0,
  sha256: 'a'.repeat(64),
};

async function until(what: string, done: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!done()) {
    if (Date.now() > end) assert.fail(`not ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('the body is pulled as the replica reads it: a replica that stops reading stops the sender', async () => {
  let produced = 0;
  let consumed = 0;
  let paused = false;
  let seen: { role: string; auth: string | undefined } | null = null;
  let reading: import('node:http').IncomingMessage | null = null;
  handle = (req, res) => {
    reading = req;
    seen = { role: peerOf(req.socket as TLSSocket)?.role ?? '', auth: req.headers.authorization };
    req.on('data', (c: Buffer) => {
      consumed += c.length;
      if (consumed >= 4 * M && !paused) {
        paused = true;
        req.pause();
      }
    });
    req.on('end', () =>
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer)),
    );
  };
  async function* body(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 256; i++) {
      produced += M;
      yield Buffer.alloc(M, i);
    }
  }
  const sending = replicaLink(self)(target(), body(), new AbortController().signal);
  await until('paused', () => paused);
  // Once the replica stops reading, the sender stops soon after: what it made and the replica
  // has not read is what the sockets' buffers hold, never the stream.
  let last = -1;
  let still = 0;
  await until('stalled', () => {
    still = produced === last ? still + 1 : 0;
    last = produced;
    return still >= 6;
  });
  assert.ok(produced - consumed <= 16 * M, `${(produced - consumed) / M} MiB ahead of the replica`);
  assert.ok(produced < 64 * M, `made ${produced / M} MiB while the replica read ${consumed / M} MiB`);
  // Reading again lets the whole stream through.
  reading!.resume();
  const result = await sending;
  assert.deepEqual(result, answer);
  assert.equal(consumed, 256 * M);
  assert.deepEqual(seen, { role: 'tern-host', auth: `Bearer ${'t'.repeat(43)}` });
});

test("a refusal before the stream is read is the replica's error, at once", async () => {
  handle = (_req, res) => {
    res
      .writeHead(401, { 'content-type': 'application/json' })
      .end(JSON.stringify({ error: { code: 'unauthorized', message: 'the ticket is not valid' } }));
  };
  let produced = 0;
  async function* body(): AsyncGenerator<Buffer> {
    for (let i = 0; i < 1024; i++) {
      produced += M;
      yield Buffer.alloc(M);
    }
  }
  await assert.rejects(
    replicaLink(self)(target(), body(), new AbortController().signal),
    (e: TernError) => e instanceof TernError && e.code === 'unauthorized' && /ticket/.test(e.message),
  );
  assert.ok(produced < 64 * M, `made ${produced / M} MiB for a refused stream`);
});
