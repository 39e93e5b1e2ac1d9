/**
 * The API for people speaks HTTPS only, with a certificate from the cluster CA that the CLI
 * trusts through its config; every answer carries the security headers, and none is cached.
 * `tern up` keeps its data directory private.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { issueAdminToken } from '../src/manager/auth/bootstrap.ts';
import type { RunningManager } from '../src/manager/start.ts';
import { ClusterCa } from '../src/pki/ca.ts';
import { freePorts, repoRoot, runTern, TestApi, tempDir, ternEnv } from './harness.ts';
import { startQuietManager } from './sim-harness.ts';

let dir: string;
let m: RunningManager;
let api: TestApi;

before(async () => {
  dir = tempDir('tern-https');
  m = await startQuietManager(dir);
  api = new TestApi(m.url, await issueAdminToken(m.services, 'admin'), path.join(dir, 'pki', 'ca.crt'));
});

after(async () => {
  await m?.close();
});

/** bin/tern with only the given TERN_ variables and a config directory of this test's own. */
const tern = (args: string[], env: Record<string, string>) =>
  runTern(args, { env: { XDG_CONFIG_HOME: dir, ...env } });

test('the API answers over HTTPS only, with security headers on every answer', async () => {
  assert.match(m.url, /^https:\/\//);
  // Plain HTTP to the API port gets no API answer.
  const plain = await new Promise<number | Error>((resolve) => {
    const req = http.get(`${m.url.replace(/^https:/, 'http:')}/api/v1/health`, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', resolve);
  });
  assert.ok(plain instanceof Error || plain === 400, `plain HTTP answered ${plain}`);
  for (const [what, res] of [
    ['health', await api.fetch(`${m.url}/api/v1/health`)],
    ['a refusal', await api.fetch(`${m.url}/api/v1/vms`)],
    ['an unknown route', await api.fetch(`${m.url}/nowhere`)],
    ['a list', await api.fetch(`${m.url}/api/v1/vms`, { headers: { authorization: `Bearer ${api.token}` } })],
  ] as const) {
    await res.body?.cancel();
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
    assert.match(
      res.headers.get('content-security-policy') ?? '',
      /default-src 'self'.*frame-ancestors 'none'/,
      what,
    );
    assert.equal(res.headers.get('cache-control'), 'no-store', what);
  }
});

test('a new token, a login and its cookie are never cached; the cookie is Secure', async () => {
  await api.request('POST', '/api/v1/users', { name: 'erin', password: 'erin-password-1', role: 'user' });
  const made = await api.fetch(`${m.url}/api/v1/tokens`, {
    method: 'POST',
    headers: { authorization: `Bearer ${api.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'erin-ci', user: 'erin' }),
  });
  assert.equal(made.status, 201, await made.clone().text());
  assert.match(((await made.json()) as { token: string }).token, /^tern_/);
  assert.equal(made.headers.get('cache-control'), 'no-store');
  const login = await api.fetch(`${m.url}/api/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'erin', password: 'erin-password-1' }),
  });
  assert.equal(login.status, 200);
  await login.body?.cancel();
  assert.equal(login.headers.get('cache-control'), 'no-store');
  assert.match(login.headers.get('set-cookie') ?? '', /; HttpOnly; Secure; SameSite=Strict/);
});

test('the CLI trusts only the CA it was given, and says so when the certificate is not from it', async () => {
  const ok = await tern(['whoami'], api.cliEnv);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /^user:\s+admin/m);
  // Another cluster's CA, and the system's CAs: neither signed this manager's certificate.
  const otherDir = tempDir('tern-other-ca');
  await ClusterCa.open(otherDir);
  for (const env of [
    { ...api.cliEnv, TERN_CA: path.join(otherDir, 'ca.crt') },
    { TERN_URL: api.url, TERN_TOKEN: api.token },
  ]) {
    const r = await tern(['whoami'], env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /^tern: the manager at https:\/\/\S+ presented a certificate this CLI does not trust \(.+\); give the CA/,
    );
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
  }
  // A CA in the config, as `tern up` and `tern login --ca` write it.
  const config = path.join(dir, 'cli.json');
  fs.writeFileSync(
    config,
    JSON.stringify({ url: api.url, token: api.token, ca: fs.readFileSync(api.caFile, 'utf8') }),
    { mode: 0o600 },
  );
  const viaConfig = await tern(['whoami'], { TERN_CONFIG: config });
  assert.equal(viaConfig.code, 0, viaConfig.stderr);
});

test('tern up: HTTPS with the CA in the CLI config, and a private data directory', async () => {
  const home = tempDir('tern-up');
  // A data directory an earlier version left readable by others.
  fs.mkdirSync(path.join(home, 'data'), { mode: 0o755 });
  fs.chmodSync(path.join(home, 'data'), 0o755);
  const config = path.join(home, 'config.json');
  const [port, agentPort, clusterPort] = await freePorts(3);
  const env = { TERN_HOME: path.join(home, 'data'), TERN_CONFIG: config };
  const up = spawn(
    path.join(repoRoot, 'bin', 'tern'),
    ['up', '--port', String(port), '--agent-port', String(agentPort), '--cluster-port', String(clusterPort)],
    { env: ternEnv(env), stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise((resolve) => up.once('exit', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      let seen = '';
      const timer = setTimeout(() => reject(new Error(`tern up did not start: ${seen}`)), 120_000);
      up.stderr.setEncoding('utf8').on('data', (d: string) => {
        seen += d;
        if (seen.includes('Tern is running')) {
          clearTimeout(timer);
          resolve();
        }
      });
      up.once('exit', (code) => reject(new Error(`tern up exited (${code}): ${seen}`)));
    });
    const written = JSON.parse(fs.readFileSync(config, 'utf8')) as { url: string; ca?: string };
    assert.equal(written.url, `https://127.0.0.1:${port}`);
    assert.match(written.ca ?? '', /BEGIN CERTIFICATE/);
    const hosts = await tern(['host', 'list'], env);
    assert.equal(hosts.code, 0, hosts.stderr);
    assert.match(hosts.stdout, /^local\s/m);
    // Nothing in the data directory is open to anyone but its owner.
    const open: string[] = [];
    const walk = (p: string) => {
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) return;
      if (st.mode & 0o077) open.push(`${path.relative(home, p)} ${(st.mode & 0o777).toString(8)}`);
      if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    };
    walk(path.join(home, 'data'));
    walk(config);
    assert.deepEqual(open, []);
  } finally {
    up.kill('SIGTERM');
    await exited;
  }
});
