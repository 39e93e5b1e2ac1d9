import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { ClusterCa } from './ca.ts';
import { newKeyPair, peerOf, tlsFetch } from './identity.ts';

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tern-pki-'));

test('the CA is made once and found again, its key readable by its owner only', async () => {
  const dir = tmp();
  const a = await ClusterCa.open(dir);
  const b = await ClusterCa.open(dir);
  assert.equal(a.fingerprint, b.fingerprint);
  assert.equal(fs.statSync(path.join(dir, 'ca.key')).mode & 0o777, 0o600);
});

test('issued certificates carry the role and the addresses, signed by the CA', async () => {
  const ca = await ClusterCa.open(tmp());
  const { publicKeyPem } = newKeyPair();
  const cert = await ca.issue('host-1', 'tern-host', publicKeyPem, ['10.0.0.5', 'host-1.example']);
  const x = new X509Certificate(cert.pem);
  assert.match(x.subject, /CN=host-1/);
  assert.match(x.subject, /OU=tern-host/);
  assert.match(x.subjectAltName ?? '', /IP Address:10\.0\.0\.5/);
  assert.match(x.subjectAltName ?? '', /DNS:host-1\.example/);
  assert.ok(x.verify(new X509Certificate(ca.certPem).publicKey));
  assert.equal(x.fingerprint256, cert.fingerprint);
  await assert.rejects(ca.issue('x', 'tern-host', 'not a key', []), /ECDSA P-256/);
});

test('mutual TLS: the server sees the client role; a pin refuses any other certificate', async (t) => {
  const ca = await ClusterCa.open(tmp());
  const server = await ca.managerIdentity(tmp(), ['127.0.0.1']);
  const { privateKeyPem, publicKeyPem } = newKeyPair();
  const hostCert = await ca.issue('h', 'tern-host', publicKeyPem, ['127.0.0.1']);
  const srv = https.createServer(
    { key: server.key, cert: server.cert, ca: ca.certPem, requestCert: true, rejectUnauthorized: true },
    (req, res) => res.end(peerOf(req.socket as TLSSocket)?.role ?? 'none'),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.after(() => srv.close());
  const url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}/`;
  const asHost = tlsFetch({ key: privateKeyPem, cert: hostCert.pem, ca: ca.certPem });
  assert.equal(await (await asHost(url)).text(), 'tern-host');
  const pinned = tlsFetch({ key: privateKeyPem, cert: hostCert.pem, ca: ca.certPem }, { pin: () => 'AA:BB' });
  await assert.rejects(pinned(url), /fetch failed/);
  const other = await ClusterCa.open(tmp());
  const stranger = tlsFetch(await other.managerIdentity(tmp(), ['127.0.0.1']));
  await assert.rejects(stranger(url), /fetch failed/);
  for (const f of [asHost, pinned, stranger]) await f.close();
});
