/**
 * bench/auth: what authentication and authorization cost per API request. A manager in this
 * process with an empty inventory answers a client in the same process (undici pool, keep-alive)
 * at concurrency 1 and 8; the unauthenticated `GET /api/v1/health` is the floor, measured in the
 * same run and rounds. Cases: who-am-I with an admin API token and with a session cookie
 * (authentication alone), authorized reads that do little else (projects, the first VM page as
 * admin, as a self-service user filtered by owner, and with a token scoped to vm.read), and a
 * refusal (self-service user listing hosts: 403, written to the audit log). Every case runs a
 * share of its requests in each round, the cases one after the other, so drift in the machine's
 * load falls on all of them alike. Beside it: one password login (scrypt), and the
 * authenticator called directly, without HTTP.
 *
 *   node bench/auth.ts [--c1 2000] [--c8 5000] [--warmup 300] [--rounds 5]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { issueAdminToken } from '../src/manager/auth/bootstrap.ts';
import { sessionCookie } from '../src/manager/auth/sessions.ts';
import { startQuietManager } from '../test/sim-harness.ts';
import { loadavg, percentile, table } from './report.ts';

const { values } = parseArgs({
  options: {
    c1: { type: 'string', default: '2000' },
    c8: { type: 'string', default: '5000' },
    warmup: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '5' },
  },
});
const rounds = Number(values.rounds);
const warmup = Number(values.warmup);
const levels = [
  { c: 1, n: Number(values.c1) },
  { c: 8, n: Number(values.c8) },
];

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const us = (ms: number) => Math.round(ms * 1000);

interface Case {
  name: string;
  path: string;
  headers: Record<string, string>;
  status: number;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-bench-auth-'));
const manager = await startQuietManager(dir);

try {
  const adminToken = await issueAdminToken(manager.services, 'bench');
  const admin = { authorization: `Bearer ${adminToken}` };
  const setup = new Pool(manager.url, { connections: 1, connect: { ca: manager.apiCa ?? undefined } });
  type Answer = { status: number; headers: Record<string, unknown>; json: unknown };
  const call = async (
    method: 'GET' | 'POST',
    p: string,
    headers: Record<string, string>,
    body?: unknown,
  ): Promise<Answer> => {
    const r = await setup.request({
      method,
      path: p,
      headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: r.statusCode, headers: r.headers, json: await r.body.json() };
  };
  const must = async (what: string, status: number, r: Promise<Answer>) => {
    const got = await r;
    if (got.status !== status) throw new Error(`${what}: ${got.status} ${JSON.stringify(got.json)}`);
    return got;
  };

  // A self-service user with a password; its session comes from one login, timed on its own.
  const password = 'correct horse battery staple';
  await must(
    'make user',
    201,
    call('POST', '/api/v1/users', admin, { name: 'alice', password, role: 'user' }),
  );
  const logins: number[] = [];
  let cookie = '';
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const r = await must('login', 200, call('POST', '/api/v1/session', {}, { user: 'alice', password }));
    logins.push(performance.now() - t0);
    const set = String(r.headers['set-cookie'] ?? '');
    const value = set.match(new RegExp(`${sessionCookie}=([^;]+)`))?.[1];
    if (!value) throw new Error(`login set no cookie: ${set}`);
    cookie = `${sessionCookie}=${value}`;
  }
  const token = async (body: Record<string, unknown>) =>
    ((await must('make token', 201, call('POST', '/api/v1/tokens', admin, body))).json as { token: string })
      .token;
  const userToken = await token({ name: 'alice-cli', user: 'alice' });
  const scopedToken = await token({ name: 'read-only', scopes: ['vm.read'] });
  await setup.close();

  const cases: Case[] = [
    { name: 'health (public, floor)', path: '/api/v1/health', headers: {}, status: 200 },
    { name: 'session, admin token', path: '/api/v1/session', headers: admin, status: 200 },
    { name: 'session, cookie (user)', path: '/api/v1/session', headers: { cookie }, status: 200 },
    { name: 'projects, admin token', path: '/api/v1/projects', headers: admin, status: 200 },
    { name: 'vms?limit=1, admin token', path: '/api/v1/vms?limit=1', headers: admin, status: 200 },
    {
      name: 'vms?limit=1, user token (own only)',
      path: '/api/v1/vms?limit=1',
      headers: { authorization: `Bearer ${userToken}` },
      status: 200,
    },
    {
      name: 'vms?limit=1, token scoped vm.read',
      path: '/api/v1/vms?limit=1',
      headers: { authorization: `Bearer ${scopedToken}` },
      status: 200,
    },
    {
      name: 'hosts as user: 403 + audit',
      path: '/api/v1/hosts',
      headers: { authorization: `Bearer ${userToken}` },
      status: 403,
    },
  ];

  /** `n` requests of one case with `c` in flight; each one's latency in ms. */
  async function drive(pool: Pool, k: Case, c: number, n: number): Promise<number[]> {
    const lat: number[] = [];
    let left = n;
    const worker = async () => {
      while (left > 0) {
        left--;
        const t0 = performance.now();
        const r = await pool.request({ method: 'GET', path: k.path, headers: k.headers });
        await r.body.dump();
        lat.push(performance.now() - t0);
        if (r.statusCode !== k.status)
          throw new Error(`${k.name}: status ${r.statusCode}, expected ${k.status}`);
      }
    };
    await Promise.all(Array.from({ length: c }, worker));
    return lat;
  }

  console.log(
    `# auth cost per request: manager and client in one process (undici, keep-alive), empty inventory, ${rounds} rounds, load ${loadavg()}\n`,
  );
  const rows: (string | number)[][] = [];
  let figure = 0;
  let figureMean = 0;
  for (const { c, n } of levels) {
    const pool = new Pool(manager.url, { connections: c, connect: { ca: manager.apiCa ?? undefined } });
    for (const k of cases) await drive(pool, k, c, warmup);
    const lat = new Map<Case, number[]>(cases.map((k) => [k, []]));
    const wall = new Map<Case, number>(cases.map((k) => [k, 0]));
    for (let r = 0; r < rounds; r++) {
      const share = Math.floor(n / rounds) + (r < n % rounds ? 1 : 0);
      for (const k of cases) {
        const t0 = performance.now();
        lat.get(k)?.push(...(await drive(pool, k, c, share)));
        wall.set(k, (wall.get(k) ?? 0) + performance.now() - t0);
      }
    }
    await pool.close();
    const stats = cases.map((k) => {
      const xs = (lat.get(k) ?? []).sort((a, b) => a - b);
      return {
        k,
        rps: (xs.length / (wall.get(k) ?? 1)) * 1000,
        mean: mean(xs),
        p50: percentile(xs, 0.5),
        p99: percentile(xs, 0.99),
      };
    });
    const floor = stats[0];
    for (const x of stats) {
      const floorRow = x === floor;
      rows.push([
        x.k.name,
        c,
        n,
        Math.round(x.rps),
        us(x.mean),
        us(x.p50),
        us(x.p99),
        floorRow ? '' : us(x.p50 - floor.p50),
        floorRow ? '' : us(x.mean - floor.mean),
      ]);
      if (c === 1 && x.k.name === 'session, admin token') {
        figure = us(x.p50 - floor.p50);
        figureMean = us(x.mean - floor.mean);
      }
    }
  }
  table(
    ['case', 'c', 'requests', 'req/s', 'mean µs', 'p50 µs', 'p99 µs', 'auth p50 µs', 'auth mean µs'],
    rows,
  );

  // The authenticator alone, in this process without HTTP: what the guard awaits.
  const direct: (string | number)[][] = [];
  const auth = manager.services.authenticator;
  const directCases: [string, { authorization?: string; cookie?: string }][] = [
    ['admin token', admin],
    ['session cookie', { cookie }],
    ['scoped token', { authorization: `Bearer ${scopedToken}` }],
  ];
  const directN = levels[0].n;
  for (const [name, headers] of directCases) {
    for (let i = 0; i < warmup; i++) await auth.authenticate(headers);
    const xs: number[] = [];
    for (let i = 0; i < directN; i++) {
      const t0 = performance.now();
      await auth.authenticate(headers);
      xs.push(performance.now() - t0);
    }
    xs.sort((a, b) => a - b);
    direct.push([name, directN, us(mean(xs)), us(percentile(xs, 0.5)), us(percentile(xs, 0.99))]);
  }
  console.log('\n# authenticate() called directly (no HTTP), one at a time\n');
  table(['credential', 'calls', 'mean µs', 'p50 µs', 'p99 µs'], direct);

  logins.sort((a, b) => a - b);
  console.log(
    `\none password login (POST /api/v1/session, scrypt): ${logins.map((x) => x.toFixed(1)).join(', ')} ms (median ${logins[1].toFixed(1)} ms); load after ${loadavg()}`,
  );
  console.log(
    `\nauth+authz adds ${figure} µs per request (p50, token, c=1) over an unauthenticated route (mean ${figureMean} µs)`,
  );
} finally {
  await manager.close();
  fs.rmSync(dir, { recursive: true, force: true });
}
