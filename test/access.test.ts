/**
 * Access control against a real manager (simulated hosts): every route needs a principal,
 * each role may do exactly what the matrix says, self-service users see and touch only their
 * own VMs within their project's quota, tokens are scoped, expire and are revoked, sessions
 * end, and every change or refusal lands in the append-only audit log.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Agent, fetch as undiciFetch } from 'undici';
import type { AuditRecord, Project, Whoami } from '../src/wire/identity.ts';
import type { Role } from '../src/wire/permissions.ts';
import type { Vm } from '../src/wire/vm.ts';
import type { TestApi } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
const guestPassword = `guest-${Date.now().toString(36)}-secret`;
const as: Partial<Record<Role, TestApi>> = {};
const api = (r: Role) => as[r] as TestApi;

/** A local user with a role and a password, and an API token for it. */
async function makeUser(name: string, role: Role | null, groups: string[] = []): Promise<TestApi> {
  await c.api.request('POST', '/api/v1/users', {
    name,
    password: `${name}-password-1`,
    ...(role ? { role } : {}),
    groups,
  });
  const t = await c.api.request<{ token: string }>('POST', '/api/v1/tokens', {
    name: `${name}-token`,
    user: name,
  });
  return c.api.as(t.token);
}

before(async () => {
  c = await startSimCluster(2);
  for (const r of ['admin', 'operator', 'auditor', 'user'] as Role[]) as[r] = await makeUser(`the-${r}`, r);
  await c.api.request('POST', '/api/v1/projects', { name: 'dev', quota: { vms: 3, vcpus: 4 } });
  await c.api.request('PUT', '/api/v1/projects/dev/members/user/the-user');
});

after(async () => {
  await c?.close();
});

test('every route but health, the OpenAPI document and login refuses a request without a principal', async () => {
  const anonymous = c.api.as('');
  for (const [key, rule] of c.manager.routeAccess) {
    const [method, route] = key.split(' ');
    const path = route.replace(/:([a-z]+)/gi, 'x');
    const r = await c.api.fetch(`${c.manager.url}${path}`, {
      method,
      ...(method === 'GET' ? {} : { body: '{}', headers: { 'content-type': 'application/json' } }),
    });
    if (rule === 'public') assert.notEqual(r.status, 401, key);
    else assert.equal(r.status, 401, `${key} answered ${r.status} without a principal`);
    await r.body?.cancel();
  }
  const bad = await anonymous.raw('GET', '/api/v1/vms', { headers: { authorization: 'Bearer tern_forged' } });
  assert.equal(bad.status, 401);
  assert.equal(bad.body.error?.message, 'the API token is not valid');
});

// allowed: the request got past authorization (any answer but 401/403); refused: 403.
const matrix: { what: string; method: string; path: string; body?: unknown; allowed: Role[] }[] = [
  { what: 'list VMs', method: 'GET', path: '/api/v1/vms', allowed: ['admin', 'operator', 'auditor', 'user'] },
  {
    what: 'create a VM',
    method: 'POST',
    path: '/api/v1/vms',
    body: { name: 'Bad_Name' },
    allowed: ['admin', 'operator', 'user'],
  },
  { what: 'delete a VM', method: 'DELETE', path: '/api/v1/vms/none', allowed: ['admin', 'operator', 'user'] },
  {
    what: 'start a VM',
    method: 'POST',
    path: '/api/v1/vms/none/start',
    allowed: ['admin', 'operator', 'user'],
  },
  {
    what: 'migrate a VM',
    method: 'POST',
    path: '/api/v1/vms/none/migrate',
    body: {},
    allowed: ['admin', 'operator'],
  },
  {
    what: 'set a VM’s HA policy',
    method: 'PUT',
    path: '/api/v1/vms/none/ha',
    body: {},
    allowed: ['admin', 'operator'],
  },
  { what: 'list hosts', method: 'GET', path: '/api/v1/hosts', allowed: ['admin', 'operator', 'auditor'] },
  {
    what: 'add a host',
    method: 'POST',
    path: '/api/v1/hosts',
    body: { name: 'Bad_Name' },
    allowed: ['admin', 'operator'],
  },
  {
    what: 'change cluster settings',
    method: 'PATCH',
    path: '/api/v1/cluster/settings',
    body: { strategy: 'x' },
    allowed: ['admin', 'operator'],
  },
  {
    what: 'see HA status',
    method: 'GET',
    path: '/api/v1/ha/status',
    allowed: ['admin', 'operator', 'auditor'],
  },
  {
    what: 'list templates',
    method: 'GET',
    path: '/api/v1/templates',
    allowed: ['admin', 'operator', 'auditor', 'user'],
  },
  {
    what: 'delete a template',
    method: 'DELETE',
    path: '/api/v1/templates/none',
    allowed: ['admin', 'operator'],
  },
  { what: 'delete an image', method: 'DELETE', path: '/api/v1/images/none', allowed: ['admin', 'operator'] },
  {
    what: 'list tasks',
    method: 'GET',
    path: '/api/v1/tasks',
    allowed: ['admin', 'operator', 'auditor', 'user'],
  },
  { what: 'list alerts', method: 'GET', path: '/api/v1/alerts', allowed: ['admin', 'operator', 'auditor'] },
  { what: 'list users', method: 'GET', path: '/api/v1/users', allowed: ['admin', 'operator', 'auditor'] },
  { what: 'create a user', method: 'POST', path: '/api/v1/users', body: { name: '' }, allowed: ['admin'] },
  { what: 'create a group', method: 'POST', path: '/api/v1/groups', body: { name: '' }, allowed: ['admin'] },
  { what: 'configure LDAP', method: 'PUT', path: '/api/v1/identity/ldap', body: {}, allowed: ['admin'] },
  {
    what: 'list projects',
    method: 'GET',
    path: '/api/v1/projects',
    allowed: ['admin', 'operator', 'auditor', 'user'],
  },
  {
    what: 'create a project',
    method: 'POST',
    path: '/api/v1/projects',
    body: { name: '' },
    allowed: ['admin'],
  },
  {
    what: 'change a quota',
    method: 'PATCH',
    path: '/api/v1/projects/dev',
    body: { quota: { vms: 3 } },
    allowed: ['admin'],
  },
  { what: 'read the audit log', method: 'GET', path: '/api/v1/audit', allowed: ['admin', 'auditor'] },
  { what: 'list secrets', method: 'GET', path: '/api/v1/secrets', allowed: ['admin', 'operator', 'user'] },
  {
    what: 'store a secret',
    method: 'POST',
    path: '/api/v1/secrets',
    body: { name: '' },
    allowed: ['admin', 'operator', 'user'],
  },
  { what: 'see the keys', method: 'GET', path: '/api/v1/keys', allowed: ['admin'] },
  { what: 'rotate the keys', method: 'POST', path: '/api/v1/keys/rotate', allowed: ['admin'] },
  {
    what: 'back up the keys',
    method: 'POST',
    path: '/api/v1/keys/backup',
    body: { passphrase: '' },
    allowed: ['admin'],
  },
  {
    what: 'see oneself',
    method: 'GET',
    path: '/api/v1/session',
    allowed: ['admin', 'operator', 'auditor', 'user'],
  },
];

test('the role matrix: each role may do exactly what it should, and is refused the rest', async () => {
  const wrong: string[] = [];
  for (const row of matrix) {
    for (const role of ['admin', 'operator', 'auditor', 'user'] as Role[]) {
      const r = await api(role).raw(row.method, row.path, {
        ...(row.body !== undefined
          ? { body: JSON.stringify(row.body), headers: { 'content-type': 'application/json' } }
          : {}),
      });
      const allowed = row.allowed.includes(role);
      if (allowed && (r.status === 401 || r.status === 403))
        wrong.push(`${role} may ${row.what} but got ${r.status} ${r.body.error?.message}`);
      if (!allowed && (r.status !== 403 || r.body.error?.code !== 'forbidden'))
        wrong.push(`${role} may not ${row.what} but got ${r.status}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('a self-service user sees and operates only its own VMs, within its project’s quota', async () => {
  const user = api('user');
  const mine = await user.task('POST', '/api/v1/vms', {
    name: 'mine-1',
    template: 'sim',
    vcpus: 2,
    start: true,
    userData: `#cloud-config\nchpasswd: {list: "root:${guestPassword}"}\n`,
  });
  assert.equal(mine.state, 'succeeded');
  const theirs = await c.api.task('POST', '/api/v1/vms', { name: 'theirs-1', template: 'sim', vcpus: 1 });
  assert.equal(theirs.state, 'succeeded');

  const listed = await user.request<{ items: Vm[] }>('GET', '/api/v1/vms');
  assert.deepEqual(
    listed.items.map((v) => v.name),
    ['mine-1'],
  );
  assert.equal(listed.items[0].project, 'dev', 'the only project of the user is chosen');
  for (const [method, path] of [
    ['GET', '/api/v1/vms/theirs-1'],
    ['POST', '/api/v1/vms/theirs-1/stop'],
    ['DELETE', '/api/v1/vms/theirs-1'],
  ]) {
    const r = await user.raw(method, path);
    assert.equal(r.status, 404, `${method} ${path}`);
    assert.equal(r.body.error?.message, 'VM theirs-1 does not exist');
  }
  const tasks = await user.request<{ items: { id: string; requestedBy: string | null }[] }>(
    'GET',
    '/api/v1/tasks',
  );
  const me = await user.request<Whoami>('GET', '/api/v1/session');
  assert.ok(tasks.items.length > 0 && tasks.items.every((t) => t.requestedBy === me.userId));
  assert.equal((await user.raw('GET', `/api/v1/tasks/${theirs.id}`)).status, 404);

  // 2 of 4 vCPUs used: 4 more is refused, naming the project and the quota.
  const over = await user.raw('POST', '/api/v1/vms', {
    body: JSON.stringify({ name: 'mine-2', template: 'sim', vcpus: 4 }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(over.status, 403);
  assert.equal(over.body.error?.code, 'quota_exceeded');
  assert.equal(
    over.body.error?.message,
    'project dev would exceed its vCPU quota: 2 of 4 in use, 4 more asked',
  );
  assert.equal((await user.raw('GET', '/api/v1/vms/mine-2')).status, 404, 'nothing was created');

  // Racing requests cannot share out the last of a quota twice: 2 VMs left of 3, 5 asked at once.
  const racers = await Promise.all(
    [1, 2, 3, 4, 5].map((i) =>
      user.raw('POST', '/api/v1/vms', {
        body: JSON.stringify({ name: `race-${i}`, template: 'sim', vcpus: 1 }),
        headers: { 'content-type': 'application/json' },
      }),
    ),
  );
  assert.equal(racers.filter((r) => r.status === 202).length, 2);
  assert.ok(racers.filter((r) => r.status !== 202).every((r) => r.body.error?.code === 'quota_exceeded'));
  const dev = await user.request<Project>('GET', '/api/v1/projects/dev');
  assert.deepEqual(dev.usage.vms, 3);
  assert.equal(dev.usage.vcpus, 4);

  // Disks count too: growing one past the disk quota is refused before anything changes.
  await c.api.request('PATCH', '/api/v1/projects/dev', {
    quota: { diskBytes: dev.usage.diskBytes + 2 ** 30 },
  });
  const disk = await user.raw('POST', '/api/v1/vms/mine-1/disks', {
    body: JSON.stringify({ sizeGiB: 2 }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(disk.status, 403);
  assert.match(
    disk.body.error?.message ?? '',
    /^project dev would exceed its disk quota: .* 2\.0 GiB more asked$/,
  );
  const steal = await user.raw('POST', '/api/v1/vms/mine-1/disks', {
    body: JSON.stringify({
      volume: { pool: 'shared', path: `vms/${theirs.objects[0].slice(3)}/disk0.qcow2` },
    }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(steal.status, 403, 'another VM’s disk cannot be attached');

  // Not a member: refused by name.
  await c.api.request('POST', '/api/v1/projects', { name: 'prod' });
  const elsewhere = await user.raw('POST', '/api/v1/vms', {
    body: JSON.stringify({ name: 'mine-3', template: 'sim', project: 'prod' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(elsewhere.status, 403);
  assert.equal(elsewhere.body.error?.message, 'you are not a member of project prod');
});

test('a self-service user runs guest commands only in its own VMs, audited with the command', async () => {
  const user = api('user');
  const body = (b: unknown) => ({ body: JSON.stringify(b), headers: { 'content-type': 'application/json' } });
  for (const path of ['/api/v1/vms/theirs-1/exec', '/api/v1/vms/theirs-1/files/read']) {
    const r = await user.raw(
      'POST',
      path,
      body(path.endsWith('exec') ? { command: ['id'] } : { path: '/etc/shadow' }),
    );
    assert.equal(r.status, 404, path);
    assert.equal(r.body.error?.message, 'VM theirs-1 does not exist');
  }
  // Its own VM: allowed, and the simulated guest says honestly that it runs nothing.
  const own = await user.raw(
    'POST',
    '/api/v1/vms/mine-1/exec',
    body({ command: ['cat', '/etc/hostname'], input: 'c2VjcmV0' }),
  );
  assert.equal(own.status, 409);
  assert.match(own.body.error?.message ?? '', /not supported by the sim driver/);
  // An auditor may read everything but operates nothing.
  const auditor = api('auditor');
  assert.equal((await auditor.raw('POST', '/api/v1/vms/mine-1/exec', body({ command: ['id'] }))).status, 403);
  const log = await auditor.request<{ items: AuditRecord[] }>(
    'GET',
    '/api/v1/audit?actor=the-user&limit=1000',
  );
  const exec = log.items.find((e) => e.action === 'POST /vms/:vm/exec' && e.object === 'vms/mine-1/exec');
  assert.ok(exec, 'the exec is recorded');
  assert.match(exec.detail ?? '', /^command: "cat" "\/etc\/hostname": .*sim driver/);
  assert.ok(!JSON.stringify(log.items).includes('c2VjcmV0'), 'the input is not recorded');
  const denied = log.items.find((e) => e.object === 'vms/theirs-1/files/read');
  assert.equal(denied?.result, 'failed');
});

test('tokens are scoped, expire and can be revoked; sessions end at logout and password change', async () => {
  const scoped = await c.api.request<{ token: string; id: string }>('POST', '/api/v1/tokens', {
    name: 'read-only',
    scopes: ['vm.read', 'vm.all'],
  });
  const ro = c.api.as(scoped.token);
  assert.equal((await ro.raw('GET', '/api/v1/vms')).status, 200);
  const refused = await ro.raw('POST', '/api/v1/vms/theirs-1/stop');
  assert.equal(refused.status, 403);
  assert.match(refused.body.error?.message ?? '', /needs the permission vm\.write/);
  // A user cannot give a token more than it holds.
  const grab = await api('user').raw('POST', '/api/v1/tokens', {
    body: JSON.stringify({ name: 'grab', scopes: ['host.write'] }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(grab.status, 403);

  // A token never outlives the token that made it.
  const child = await ro.request<{ expiresAt: string }>('POST', '/api/v1/tokens', {
    name: 'child',
    expiresInDays: 3650,
  });
  const parent = await ro.request<Whoami>('GET', '/api/v1/session');
  assert.equal(child.expiresAt, parent.expiresAt);
  await c.api.request('DELETE', `/api/v1/tokens/${scoped.id}`);
  const revoked = await ro.raw('GET', '/api/v1/vms');
  assert.equal(revoked.status, 401);
  assert.equal(revoked.body.error?.message, 'the API token was revoked');

  const s = c.manager.services;
  const admin = await s.users.get('the-admin');
  const old = await s.tokens.create({ name: 'old', userId: admin.id, expiresAt: '2020-01-01T00:00:00.000Z' });
  const expired = await c.api.as(old.token).raw('GET', '/api/v1/vms');
  assert.equal(expired.status, 401);
  assert.equal(expired.body.error?.message, 'the API token has expired');

  // A web session: the cookie works until logout.
  const login = async (user: string, password: string) =>
    c.api.fetch(`${c.manager.url}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user, password }),
    });
  const wrong = await login('the-operator', 'not-the-password');
  assert.equal(wrong.status, 401);
  const unknown = await login('nobody-at-all', 'not-the-password');
  assert.deepEqual(await unknown.json(), await wrong.json(), 'an unknown user looks like a wrong password');
  const ok = await login('the-operator', 'the-operator-password-1');
  assert.equal(ok.status, 200);
  const cookie = (ok.headers.get('set-cookie') ?? '').split(';')[0];
  assert.match(ok.headers.get('set-cookie') ?? '', /HttpOnly; Secure; SameSite=Strict/);
  const viaCookie = (path: string, method = 'GET') =>
    c.api.fetch(`${c.manager.url}${path}`, { method, headers: { cookie } });
  const who = (await (await viaCookie('/api/v1/session')).json()) as Whoami;
  assert.deepEqual([who.user, who.via, who.roles], ['the-operator', 'session', ['operator']]);
  assert.equal((await viaCookie('/api/v1/users')).status, 200);
  assert.equal((await viaCookie('/api/v1/audit')).status, 403);
  assert.equal((await viaCookie('/api/v1/session', 'DELETE')).status, 204);
  assert.equal((await viaCookie('/api/v1/session')).status, 401);

  const again = (await login('the-operator', 'the-operator-password-1')).headers.get('set-cookie') ?? '';
  await c.api.request('PATCH', '/api/v1/users/the-operator', { password: 'a-brand-new-password' });
  const ended = await c.api.fetch(`${c.manager.url}/api/v1/session`, {
    headers: { cookie: again.split(';')[0] },
  });
  assert.equal(ended.status, 401, 'a new password ends the sessions of the old one');
});

test('parallel password guesses are counted before their answers: the lock holds', async () => {
  const guesses = await Promise.all(
    Array.from({ length: 12 }, (_, i) =>
      c.api
        .fetch(`${c.manager.url}/api/v1/session`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ user: 'the-auditor', password: `guess-number-${i}` }),
        })
        .then((r) => r.status),
    ),
  );
  assert.ok(guesses.every((st) => st === 401));
  const right = await c.api.fetch(`${c.manager.url}/api/v1/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'the-auditor', password: 'the-auditor-password-1' }),
  });
  assert.equal(right.status, 401);
  assert.match(
    ((await right.json()) as { error: { message: string } }).error.message,
    /too many failed logins/,
  );
  const bad = await c.api.fetch(`${c.manager.url}/api/v1/session`, {
    headers: { cookie: 'tern_session=%E0%A4%A' },
  });
  assert.equal(bad.status, 401, 'a malformed cookie is no session, not an error');
});

test('a stranger guessing from elsewhere cannot lock a user out of the user’s own address', async () => {
  // The stranger is 127.0.0.2; the admin logs in from 127.0.0.1, as every other test does.
  const stranger = new Agent({
    localAddress: '127.0.0.2',
    connect: { ca: fs.readFileSync(c.api.caFile, 'utf8') },
  });
  const login = (password: string, dispatcher?: Agent) =>
    undiciFetch(`${c.manager.url}/api/v1/session`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'the-admin', password }),
      dispatcher: dispatcher ?? new Agent({ connect: { ca: fs.readFileSync(c.api.caFile, 'utf8') } }),
    });
  try {
    for (let i = 0; i < 5; i++) assert.equal((await login(`wrong-${i}`, stranger)).status, 401);
    const locked = await login('the-admin-password-1', stranger);
    assert.equal(locked.status, 401);
    assert.match(
      ((await locked.json()) as { error: { message: string } }).error.message,
      /too many failed logins/,
    );
    const own = await login('the-admin-password-1');
    assert.equal(own.status, 200, 'the admin still logs in from the admin’s own address');
  } finally {
    await stranger.close();
  }
});

test('a flood of requests without credentials adds one audit record per address and minute, not one each', async () => {
  const since = new Date().toISOString();
  const flooder = new Agent({
    localAddress: '127.0.0.3',
    connect: { ca: fs.readFileSync(c.api.caFile, 'utf8') },
    connections: 8,
  });
  try {
    const statuses = await Promise.all(
      Array.from({ length: 300 }, () =>
        undiciFetch(`${c.manager.url}/api/v1/vms`, { dispatcher: flooder }).then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }),
      ),
    );
    assert.ok(statuses.every((st) => st === 401));
  } finally {
    await flooder.close();
  }
  const log = await api('auditor').request<{ items: AuditRecord[] }>(
    'GET',
    `/api/v1/audit?action=${encodeURIComponent('GET /vms')}&since=${since}&limit=1000`,
  );
  const mine = log.items.filter((e) => e.sourceIp === '127.0.0.3');
  assert.equal(mine.length, 1, 'the first at once; the rest are counted');
  assert.deepEqual([mine[0].actor, mine[0].result, mine[0].status], ['anonymous', 'denied', 401]);
  // At shutdown (or after the minute) the count is written.
  await c.manager.services.audit.close();
  const after = await api('auditor').request<{ items: AuditRecord[] }>(
    'GET',
    `/api/v1/audit?action=${encodeURIComponent('GET /vms')}&since=${since}&limit=1000`,
  );
  const counted = after.items.filter((e) => e.sourceIp === '127.0.0.3');
  assert.equal(counted.length, 2);
  assert.match(counted[0].detail ?? '', /^299 more refused without credentials in the minute since /);
});

test('self-service users cannot reach what others share: placement groups, bridges, kept disks', async () => {
  const user = api('user');
  for (const [body, message] of [
    [{ name: 'g1', template: 'sim', groups: ['any'] }, /placement groups are operator work/],
    [{ name: 'b1', template: 'sim', nics: [{ mode: 'bridge', bridge: 'br0' }] }, /bridged networks/],
  ] as const) {
    const r = await user.raw('POST', '/api/v1/vms', {
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(r.status, 403);
    assert.match(r.body.error?.message ?? '', message);
  }
  const keep = await user.raw('DELETE', '/api/v1/vms/mine-1?keepDisks=true');
  assert.equal(keep.status, 403);
  const own = await user.raw('POST', '/api/v1/secrets', {
    body: JSON.stringify({ name: 'ldap-bind-password', value: 'x' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(own.status, 400, 'the manager’s own secret names are reserved');
});

test('the last admin cannot be removed or demoted', async () => {
  await c.api.request('DELETE', '/api/v1/users/the-admin');
  const r = await c.api.raw('DELETE', '/api/v1/users/admin');
  assert.equal(r.status, 409);
  assert.match(r.body.error?.message ?? '', /would leave no enabled admin/);
  const twin = await c.api.raw('POST', '/api/v1/users', {
    body: JSON.stringify({ name: 'THE-USER', password: 'another-password' }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(twin.status, 409, 'names differing only in case are one user');
});

test('the audit log records who did what to which object, from where, and how it ended; nobody can change it', async () => {
  const auditor = api('auditor');
  const log = await auditor.request<{ items: AuditRecord[] }>(
    'GET',
    '/api/v1/audit?actor=the-user&limit=1000',
  );
  const created = log.items.find((e) => e.action === 'POST /vms' && e.object === 'vms/mine-1');
  assert.ok(created, 'the VM creation is recorded');
  assert.equal(created.result, 'ok');
  assert.equal(created.via, 'token');
  assert.equal(created.sourceIp, '127.0.0.1');
  const quota = log.items.find((e) => e.object === 'vms/mine-2');
  assert.equal(quota?.result, 'denied');
  assert.match(quota?.detail ?? '', /vCPU quota/);
  const stop = log.items.find((e) => e.action === 'POST /vms/:vm/stop');
  assert.equal(stop?.object, 'vms/theirs-1/stop');
  assert.equal(stop?.result, 'failed');
  const refusals = await auditor.request<{ items: AuditRecord[] }>(
    'GET',
    '/api/v1/audit?actor=the-auditor&result=denied',
  );
  assert.ok(
    refusals.items.some((e) => e.action === 'POST /keys/rotate'),
    'refusals are recorded',
  );
  const logins = await auditor.request<{ items: AuditRecord[] }>(
    'GET',
    '/api/v1/audit?action=POST%20/session',
  );
  assert.ok(logins.items.some((e) => e.actor === 'nobody-at-all' && e.result === 'denied'));
  assert.ok(
    logins.items.some((e) => e.actor === 'the-operator' && e.result === 'ok' && e.via === 'password'),
  );
  assert.ok(
    logins.items.every((e) => !JSON.stringify(e).includes('password-1')),
    'no password reaches the log',
  );

  const db = c.manager.db;
  await assert.rejects(db.updateTable('auditLog').set({ actor: 'someone-else' }).execute(), /append-only/);
  await assert.rejects(db.deleteFrom('auditLog').execute(), /append-only/);
});

test('a guest password in cloud-init user-data is stored encrypted, never in the task parameters', async () => {
  const files = fs.readdirSync(c.dir).filter((f) => f.startsWith('tern.db'));
  assert.ok(files.length > 0);
  for (const f of files)
    assert.equal(
      fs.readFileSync(path.join(c.dir, f)).includes(guestPassword),
      false,
      `${f} holds the password`,
    );
  const secrets = await c.api.request<{ items: { name: string; kind: string; object: string | null }[] }>(
    'GET',
    '/api/v1/secrets',
  );
  const vm = await c.api.request<Vm>('GET', '/api/v1/vms/mine-1');
  assert.ok(
    secrets.items.some((x) => x.kind === 'user-data' && x.object === `vm:${vm.id}`),
    JSON.stringify(secrets.items),
  );
});
