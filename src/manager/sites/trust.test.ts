import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ClusterCa } from '../../pki/ca.ts';
import { newKeyPair } from '../../pki/identity.ts';
import { normalizeFingerprint } from '../../pki/pinned-ca.ts';
import { siteOfCertificate } from './trust.ts';

async function cluster(name: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tern-site-${name}-`));
  return ClusterCa.open(dir);
}
const der = (pem: string) => new X509Certificate(pem).raw;

test('a certificate is a site’s only when a trusted site’s CA signed it', async () => {
  const [a, b, c] = await Promise.all([cluster('a'), cluster('b'), cluster('c')]);
  const sites = [
    { id: 'b', name: 'beta', caPem: b.certPem },
    { id: 'c', name: 'gamma', caPem: c.certPem },
  ];
  const now = new Date();
  const fromB = await b.issue('manager', 'tern-manager', newKeyPair().publicKeyPem, []);
  const hostOfC = await c.issue('h1', 'tern-host', newKeyPair().publicKeyPem, []);
  const fromA = await a.issue('manager', 'tern-manager', newKeyPair().publicKeyPem, []);

  const okB = siteOfCertificate(der(fromB.pem), sites, now);
  assert.ok('site' in okB);
  assert.equal(okB.site.name, 'beta');
  assert.equal(okB.role, 'tern-manager');
  const okC = siteOfCertificate(der(hostOfC.pem), sites, now);
  assert.ok('site' in okC && okC.site.name === 'gamma' && okC.role === 'tern-host' && okC.name === 'h1');

  const refused = siteOfCertificate(der(fromA.pem), sites, now);
  assert.ok('refused' in refused && /no site this cluster trusts/.test(refused.refused));
  // A CA certificate presented as if it were a peer's is not signed by another site's CA.
  assert.ok('refused' in siteOfCertificate(der(a.certPem), sites, now));
  assert.ok('refused' in siteOfCertificate(Buffer.from('not a certificate'), sites, now));
  // Outside its validity (issued certificates last a year).
  const later = new Date(Date.now() + 400 * 24 * 3600_000);
  const expired = siteOfCertificate(der(fromB.pem), sites, later);
  assert.ok('refused' in expired && /not valid now/.test(expired.refused));
});

test('fingerprints are read as operators paste them', () => {
  const hex = 'ab'.repeat(32);
  const want = 'AB:'.repeat(31) + 'AB';
  assert.equal(normalizeFingerprint(hex), want);
  assert.equal(normalizeFingerprint(`SHA256:${want.toLowerCase()}`), want);
  assert.equal(normalizeFingerprint(` ${want} `), want);
  assert.equal(normalizeFingerprint('ab:cd'), null);
  assert.equal(normalizeFingerprint(`${hex}00`), null);
  assert.equal(normalizeFingerprint('zz'.repeat(32)), null);
});
