/**
 * Hosts join a cluster with a join token and talk to the manager only over mutual TLS: an
 * agent refuses callers that are not managers of its cluster, a join needs the right token and
 * the right CA, and a removed host's certificate is refused from then on.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ClusterCa } from '../src/pki/ca.ts';
import { newKeyPair, tlsFetch } from '../src/pki/identity.ts';
import { agentRoutes } from '../src/wire/agent-routes.ts';
import type { Host, JoinToken } from '../src/wire/host.ts';
import { type Cluster, startCluster, TernProcess, tempDir } from './harness.ts';

let c: Cluster;

before(async () => {
  c = await startCluster('join', { hosts: ['a', 'b'] });
});
after(async () => {
  await c?.stop();
});

const managerPki = () => path.join(c.dir, 'pki');
const read = (f: string) => fs.readFileSync(f, 'utf8');

const waitOnline = (name: string) =>
  c.api.waitHost(name, (h) => h.state === 'online' && h.facts !== null, 30_000, 'online');

test('joined hosts are online with their inventory and a certificate from the cluster CA', async () => {
  const { items } = await c.api.request<{ items: Host[] }>('GET', '/api/v1/hosts');
  assert.deepEqual(
    items.map((h) => h.name),
    ['a', 'b'],
  );
  for (const name of ['a', 'b']) {
    const h = await waitOnline(name);
    assert.match(h.address, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(h.facts!.cpuFlags.length > 10);
    assert.ok(h.facts!.cores >= 1 && h.facts!.memoryMiB > 0);
    assert.ok(['kvm', 'tcg'].includes(h.facts!.accelerator));
    assert.ok(h.facts!.versions.qemu);
    assert.match(h.certificate!.fingerprint, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    const cert = read(path.join(c.dir, `agent-${name}`, 'pki', 'cert.pem'));
    const { X509Certificate } = await import('node:crypto');
    const x = new X509Certificate(cert);
    assert.equal(x.fingerprint256, h.certificate!.fingerprint);
    assert.ok(x.verify(new X509Certificate(read(path.join(managerPki(), 'ca.crt'))).publicKey));
    assert.match(x.subject, /OU=tern-host/);
  }
});

test('an agent refuses callers without a manager certificate of its cluster', async () => {
  const host = await waitOnline('a');
  const url = `${host.address}${agentRoutes.info.path}`;
  const ca = read(path.join(managerPki(), 'ca.crt'));
  // No client certificate at all: the TLS handshake fails.
  const anonymous = tlsFetch(null, { ca });
  await assert.rejects(anonymous(url), /fetch failed/);
  // A manager of another cluster (its own CA): refused too.
  const otherCa = await ClusterCa.open(tempDir('other-ca'));
  const stranger = tlsFetch(
    { ...(await otherCa.managerIdentity(tempDir('other-mgr'), ['127.0.0.1'])), ca },
    {},
  );
  await assert.rejects(stranger(url), /fetch failed/);
  // Another host of the same cluster has a valid certificate, but it is not a manager.
  const hostB = path.join(c.dir, 'agent-b', 'pki');
  const peer = tlsFetch({
    key: read(path.join(hostB, 'key.pem')),
    cert: read(path.join(hostB, 'cert.pem')),
    ca,
  });
  const res = await peer(url);
  assert.equal(res.status, 401);
  assert.match(((await res.json()) as { error: { message: string } }).error.message, /only answers managers/);
  // The manager itself is answered.
  const info = await (await c.agentClient('a')).info();
  assert.equal(info.facts.hostname.length > 0, true);
  for (const f of [anonymous, stranger, peer]) await f.close();
});

test('a join token works once, and only with the CA it names', async () => {
  const t = await c.api.request<JoinToken>('POST', '/api/v1/hosts', { name: 'c' });
  assert.match(t.command, /--join https:\/\/.* --join-token .* --ca-fingerprint /);
  const dup = await c.api.raw('POST', '/api/v1/hosts', {
    body: JSON.stringify({ name: 'a' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(dup.status, 409);

  // A wrong CA fingerprint: the agent refuses to join (a manager in the middle would differ).
  const wrongCa = t.caFingerprint.replace(/^../, t.caFingerprint.startsWith('00') ? '11' : '00');
  const dir = tempDir('join-wrong');
  const refused = new TernProcess(
    'src/agent/main.ts',
    [
      '--state-dir',
      dir,
      '--port',
      '0',
      '--join',
      c.clusterUrl,
      '--join-token',
      t.token,
      '--ca-fingerprint',
      wrongCa,
    ],
    path.join(dir, 'agent.log'),
  );
  assert.notEqual(await refused.exited, 0);
  assert.match(read(path.join(dir, 'agent.log')), /refusing to join/);

  // A made-up token is refused; the real one works once.
  const ca = read(path.join(managerPki(), 'ca.crt'));
  const f = tlsFetch(null, { ca });
  const join = async (token: string) => {
    const { privateKeyPem, publicKeyPem } = newKeyPair();
    const { sign } = await import('node:crypto');
    const proof = sign('sha256', Buffer.from(`tern-join:${token}`), privateKeyPem).toString('base64');
    return f(`${c.clusterUrl}/cluster/v1/join`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token, publicKey: publicKeyPem, proof, address: 'https://127.0.0.1:1' }),
    });
  };
  assert.equal((await join(`${t.token.split('.')[0]}.guessed`)).status, 401);
  assert.equal((await join(t.token)).status, 200);
  assert.equal((await join(t.token)).status, 401);
  // A proof made with another key than the one sent proves nothing.
  const t2 = await c.api.request<JoinToken>('POST', '/api/v1/hosts', { name: 'd' });
  const { publicKeyPem } = newKeyPair();
  const { privateKeyPem: otherKey } = newKeyPair();
  const { sign } = await import('node:crypto');
  const res = await f(`${c.clusterUrl}/cluster/v1/join`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      token: t2.token,
      publicKey: publicKeyPem,
      proof: sign('sha256', Buffer.from(`tern-join:${t2.token}`), otherKey).toString('base64'),
      address: 'https://127.0.0.1:1',
    }),
  });
  assert.equal(res.status, 401);
  await f.close();
  await c.api.request('DELETE', '/api/v1/hosts/c');
});

test('a removed host is refused: its certificate is revoked', async () => {
  const b = c.hosts.find((h) => h.name === 'b')!;
  const pki = path.join(b.stateDir, 'pki');
  const ca = read(path.join(managerPki(), 'ca.crt'));
  const asB = tlsFetch({ key: read(path.join(pki, 'key.pem')), cert: read(path.join(pki, 'cert.pem')), ca });
  const beat = () => asB(`${c.clusterUrl}/cluster/v1/heartbeat`, { method: 'POST' });
  assert.equal((await beat()).status, 200);

  const refusedLine = b.agent.waitForLine('heartbeat to the manager failed', 30_000);
  await c.api.request('DELETE', '/api/v1/hosts/b');
  const res = await beat();
  assert.equal(res.status, 403);
  assert.match(
    ((await res.json()) as { error: { message: string } }).error.message,
    /revoked when host b was removed/,
  );
  // The agent itself learns it on its next heartbeat.
  await refusedLine;
  const { items } = await c.api.request<{ items: Host[] }>('GET', '/api/v1/hosts');
  assert.deepEqual(
    items.map((h) => h.name),
    ['a'],
  );
  await asB.close();
});
