/**
 * A replication stream through the agent's own HTTPS server (mutual TLS with a cluster CA):
 * another host of the cluster may send it with the ticket the prepare gave, once; a wrong or
 * spent ticket is refused, and a host is refused everywhere else (only managers command an
 * agent). Real qemu-img and qemu-nbd; no VM.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { HypervisorDriver } from '../src/agent/driver.ts';
import { FrameEncoder } from '../src/agent/replication/frames.ts';
import { buildAgentServer } from '../src/agent/server.ts';
import { createLogger } from '../src/log.ts';
import { ClusterCa } from '../src/pki/ca.ts';
import { type Identity, newKeyPair, type TlsFetch, tlsFetch } from '../src/pki/identity.ts';
import { agentRoutes } from '../src/wire/agent-routes.ts';
import type { PrepareReceiveReply, ReceiveResult, ReplicaStatus } from '../src/wire/replication.ts';
import { pathOf } from '../src/wire/route.ts';
import { tempDir } from './harness.ts';

const rid = '7c0a5d1e-2b3f-4c6d-8e9f-0a1b2c3d4e5f';
const point = '2026-12-07T19-00-00Z';
const disks = [{ name: 'disk0', sizeBytes: 4 * 1024 * 1024 }];

let app: FastifyInstance;
let base: string;
let manager: TlsFetch;
let peerHost: TlsFetch;
const dirs: string[] = [];

async function hostIdentity(ca: ClusterCa, name: string): Promise<Identity> {
  const { privateKeyPem, publicKeyPem } = newKeyPair();
  const cert = await ca.issue(name, 'tern-host', publicKeyPem, ['127.0.0.1']);
  return { key: privateKeyPem, cert: cert.pem, ca: ca.certPem };
}

function stream(data: Buffer): Buffer {
  const e = new FrameEncoder({
    replication: rid,
    point,
    base: null,
    takenAt: '2026-12-07T19:00:00.000Z',
    disks,
  });
  return Buffer.concat([
    e.start(),
    e.data(0, 65536, data),
    e.endDisk(0),
    e.trailer({ consistency: 'crash', consistencyNote: 'no guest agent' }),
  ]);
}

async function post(f: TlsFetch, path: string, body: unknown, ticket?: string) {
  const raw = Buffer.isBuffer(body);
  const res = await f(`${base}${path}`, {
    method: 'POST',
    headers: {
      'content-type': raw ? 'application/octet-stream' : 'application/json',
      ...(ticket ? { authorization: `Bearer ${ticket}` } : {}),
    },
    body: raw ? new Uint8Array(body) : JSON.stringify(body),
  });
  return {
    status: res.status,
    json: (await res.json()) as { error: { message: string } } & Record<string, unknown>,
  };
}

before(async () => {
  const pki = tempDir('rp-pki');
  const pool = tempDir('rp-pool');
  dirs.push(pki, pool);
  const ca = await ClusterCa.open(pki);
  app = await buildAgentServer({
    driver: {} as HypervisorDriver, // the replica routes work on files alone
    pools: { p: pool },
    identity: await hostIdentity(ca, 'replica-host'),
    log: createLogger('test', 'silent'),
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  base = `https://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
  manager = tlsFetch(await ca.managerIdentity(tempDir('rp-mgr'), ['127.0.0.1']));
  peerHost = tlsFetch(await hostIdentity(ca, 'primary-host'));
});
after(async () => {
  manager?.close();
  peerHost?.close();
  await app?.close();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('replication stream over the agent server', () => {
  it('a host of the cluster sends a stream once with its ticket; a wrong or spent ticket is refused', async () => {
    const prep = await post(manager, pathOf(agentRoutes.prepareReceive, { id: rid }), {
      pool: 'p',
      point,
      base: null,
      disks,
    });
    assert.equal(prep.status, 200, JSON.stringify(prep.json));
    const { ticket } = prep.json as unknown as PrepareReceiveReply;
    const url = pathOf(agentRoutes.receiveReplica, { id: rid });
    // Past the server's 1 MiB body limit, which a stream is not held to: it is never buffered.
    const body = stream(randomBytes(2 * 1024 * 1024));
    assert.ok(body.length > 2 * 1024 * 1024);

    const wrong = await post(peerHost, url, body, 'A'.repeat(43));
    assert.equal(wrong.status, 401);
    assert.match(wrong.json.error.message, /no cycle .* awaits a stream with this ticket/);
    const none = await post(peerHost, url, body);
    assert.equal(none.status, 401);
    assert.match(none.json.error.message, /Authorization: Bearer/);

    const ok = await post(peerHost, url, body, ticket);
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    const result = ok.json as unknown as ReceiveResult;
    assert.equal(result.point, point);
    assert.equal(result.writtenBytes, 2 * 1024 * 1024);
    assert.equal(result.streamBytes, body.length);

    const again = await post(peerHost, url, body, ticket);
    assert.equal(again.status, 401, 'a spent ticket is refused');

    const status = await post(manager, pathOf(agentRoutes.replicaStatus, { id: rid }), { pool: 'p' });
    assert.deepEqual(
      (status.json as unknown as ReplicaStatus).points.map((p) => [p.id, p.consistency]),
      [[point, 'crash']],
    );
  });

  it('a host is refused on every other replica route: only a manager prepares, prunes or removes', async () => {
    for (const [r, body] of [
      [agentRoutes.prepareReceive, { pool: 'p', point: '2026-12-07T19-05-00Z', base: point, disks }],
      [agentRoutes.replicaStatus, { pool: 'p' }],
      [agentRoutes.removeReplica, { pool: 'p' }],
    ] as const) {
      const res = await post(peerHost, pathOf(r, { id: rid }), body);
      assert.equal(res.status, 401, r.path);
      assert.match(res.json.error.message, /only answers managers/);
    }
    const status = await post(manager, pathOf(agentRoutes.replicaStatus, { id: rid }), { pool: 'p' });
    assert.equal((status.json as unknown as ReplicaStatus).points.length, 1, 'the replica is still there');
  });
});
