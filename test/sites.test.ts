/**
 * Sites: two managers, each with its own CA, trust each other by fingerprint and then talk over
 * mutual TLS; a wrong fingerprint or an untrusted cluster gets nowhere.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { issueAdminToken } from '../src/manager/auth/bootstrap.ts';
import type { RunningManager } from '../src/manager/start.ts';
import { siteRoutes } from '../src/wire/api/sites.ts';
import { TestApi, tempDir } from './harness.ts';
import { startQuietManager } from './sim-harness.ts';

async function site(name: string): Promise<{ m: RunningManager; api: TestApi; dir: string }> {
  const dir = tempDir(`tern-site-${name}`);
  const m = await startQuietManager(dir);
  const api = new TestApi(m.url, await issueAdminToken(m.services, 'admin'), path.join(dir, 'pki', 'ca.crt'));
  return { m, api, dir };
}

const [a, b, c] = await Promise.all([site('a'), site('b'), site('c')]);
after(async () => {
  for (const s of [a, b, c]) {
    await s.m.close();
    fs.rmSync(s.dir, { recursive: true, force: true });
  }
});

test('two clusters trust each other by CA fingerprint, and only each other', async () => {
  const selfA = await a.api.call(siteRoutes.self);
  const selfB = await b.api.call(siteRoutes.self);
  assert.equal(selfB.fingerprint, b.m.ca.fingerprint);
  assert.notEqual(selfA.fingerprint, selfB.fingerprint);

  // A fingerprint that is not B's CA: refused, nothing kept.
  const wrong = await a.api
    .call(siteRoutes.add, { body: { name: 'beta', url: selfB.url, fingerprint: selfA.fingerprint } })
    .then(
      () => null,
      (err: Error & { code?: string }) => err,
    );
  assert.ok(wrong && /presented CA .* not the expected/.test(wrong.message), String(wrong?.message));
  assert.deepEqual((await a.api.call(siteRoutes.list)).items, []);
  const garbage = await a.api
    .call(siteRoutes.add, { body: { name: 'beta', url: selfB.url, fingerprint: 'zz'.repeat(32) } })
    .catch((err: Error) => err);
  assert.ok(garbage instanceof Error && /not a SHA-256 fingerprint/.test(garbage.message));

  // A trusts B; B does not trust A yet: one way.
  const added = await a.api.call(siteRoutes.add, {
    body: { name: 'beta', url: selfB.url, fingerprint: selfB.fingerprint.replaceAll(':', '').toLowerCase() },
  });
  assert.equal(added.fingerprint, selfB.fingerprint);
  assert.equal(added.link?.state, 'one-way', added.link?.message);

  // B trusts A back: trusted both ways, each knowing the other by its own name for it.
  const back = await b.api.call(siteRoutes.add, {
    body: { name: 'alpha', url: selfA.url, fingerprint: selfA.fingerprint },
  });
  assert.equal(back.link?.state, 'trusted', back.link?.message);
  assert.match(back.link?.message ?? '', /knows this cluster as beta/);
  const shown = await a.api.call(siteRoutes.show, { params: { site: 'beta' } });
  assert.equal(shown.link?.state, 'trusted', shown.link?.message);

  // C trusts B, B never added C: B refuses C's manager although the TLS handshake completes.
  const fromC = await c.api.call(siteRoutes.add, {
    body: { name: 'beta', url: selfB.url, fingerprint: selfB.fingerprint },
  });
  assert.equal(fromC.link?.state, 'one-way', fromC.link?.message);

  // Trust withdrawn: B no longer lets A in.
  await b.api.call(siteRoutes.remove, { params: { site: 'alpha' } });
  assert.equal((await a.api.call(siteRoutes.show, { params: { site: 'beta' } })).link?.state, 'one-way');
  const dup = await a.api
    .call(siteRoutes.add, { body: { name: 'beta', url: selfB.url, fingerprint: selfB.fingerprint } })
    .catch((err: Error) => err);
  assert.ok(dup instanceof Error && /exists already/.test(dup.message));
});

test('an unreachable site is said so, quickly', async () => {
  const r = await a.api
    .call(siteRoutes.add, {
      body: { name: 'nowhere', url: 'https://127.0.0.1:1', fingerprint: 'ab'.repeat(32) },
    })
    .catch((err: Error) => err);
  assert.ok(
    r instanceof Error && /site nowhere at https:\/\/127.0.0.1:1 is unreachable/.test(r.message),
    String(r),
  );
});
