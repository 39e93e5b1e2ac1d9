/**
 * The tern CLI for identity and access, run as people and scripts run it, against a real
 * manager with simulated hosts: a user made with a piped password logs in and gets a token in
 * its own config, works within its project's quota and is refused beyond it with a clear line,
 * the refusal is in the audit log, secrets come back byte for byte, the keys back up to a
 * private file that restores offline, and a revoked token stops working.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { AuditRecord, Whoami } from '../src/wire/identity.ts';
import { repoRoot, runTern, type TernRun } from './harness.ts';
import { type SimCluster, startSimCluster } from './sim-harness.ts';

let c: SimCluster;
/** Alice's CLI config, written by her `tern login`. */
const alice = { config: '' };

before(async () => {
  c = await startSimCluster(1);
  alice.config = path.join(c.dir, 'alice', 'config.json');
});
after(async () => {
  await c?.close();
});

/** bin/tern with `as`: the admin (TERN_URL, TERN_TOKEN, TERN_CA) or a CLI config file. */
function tern(
  args: string[],
  opts: { as?: 'admin' | { config: string }; input?: string; env?: Record<string, string> } = {},
): Promise<TernRun> {
  const as = opts.as ?? 'admin';
  const who = as === 'admin' ? c.api.cliEnv : { TERN_CONFIG: as.config };
  return runTern(args, { env: { XDG_CONFIG_HOME: c.dir, ...who, ...opts.env }, input: opts.input });
}

const ok = (r: TernRun) => assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
const oneLine = (r: TernRun) => {
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /^tern: [^\n]+\n$/, 'one line on stderr');
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
};

test('an admin makes a project with a quota and a self-service user with a piped password', async () => {
  const p = await tern([
    'project',
    'create',
    'dev',
    '--vcpus',
    '2',
    '--memory',
    '4G',
    '--description',
    'devs',
  ]);
  ok(p);
  assert.match(p.stdout, /^vCPUs:\s+0 \/ 2$/m);
  assert.match(p.stdout, /^memory:\s+0 MiB \/ 4 GiB$/m);
  assert.match(p.stdout, /^VMs:\s+0 \(no limit\)$/m);
  const u = await tern(['user', 'create', 'alice', '--role', 'user', '--display-name', 'Alice'], {
    input: 'alice-pw-1\n',
    env: {},
  });
  assert.equal(u.code, 2, 'without --password-stdin and no terminal, the password is asked for');
  assert.match(
    u.stderr,
    /^tern: password is needed: pipe it in with --password-stdin, or run this in a terminal\n$/,
  );
  const made = await tern(
    ['user', 'create', 'alice', '--role', 'user', '--display-name', 'Alice', '--password-stdin'],
    { input: 'alice-pw-1\n' },
  );
  ok(made);
  assert.match(made.stdout, /^user alice created \(roles: user\)$/m);
  ok(await tern(['project', 'add', 'dev', 'user', 'alice']));
  const list = await tern(['user', 'list']);
  ok(list);
  assert.match(list.stdout, /^alice\s+local\s+user\s+-\s+user\s+enabled/m);
});

test('tern login (TERN_PASSWORD) writes a working token into its own config; whoami shows the role', async () => {
  const bad = await tern(['login', '--url', c.manager.url, '--ca', c.api.caFile, '--user', 'alice'], {
    as: alice,
    env: { TERN_PASSWORD: 'wrong' },
  });
  oneLine(bad);
  assert.ok(!fs.existsSync(alice.config), 'no config from a failed login');
  const r = await tern(['login', '--url', c.manager.url, '--ca', c.api.caFile, '--user', 'alice'], {
    as: alice,
    env: { TERN_PASSWORD: 'alice-pw-1' },
  });
  ok(r);
  assert.match(r.stdout, new RegExp(`^logged in to ${c.manager.url} as alice \\(roles: user\\)$`, 'm'));
  const config = JSON.parse(fs.readFileSync(alice.config, 'utf8')) as { url: string; token: string };
  assert.equal(config.url, c.manager.url);
  assert.match(config.token, /^tern_/);
  assert.equal(fs.statSync(alice.config).mode & 0o777, 0o600);
  const me = await tern(['whoami'], { as: alice });
  ok(me);
  assert.match(me.stdout, /^user:\s+alice$/m);
  assert.match(me.stdout, /^roles:\s+user$/m);
  assert.match(me.stdout, /^via:\s+token$/m);
  const json = JSON.parse((await tern(['whoami', '-o', 'json'], { as: alice })).stdout) as Whoami;
  assert.deepEqual(json.roles, ['user']);
});

test('within the quota a VM is made; beyond it the refusal names the project and the quota', async () => {
  ok(
    await tern(['vm', 'create', 'small', '--template', 'sim', '--vcpus', '1', '--project', 'dev'], {
      as: alice,
    }),
  );
  const shown = await tern(['project', 'show', 'dev'], { as: alice });
  ok(shown);
  assert.match(shown.stdout, /^vCPUs:\s+1 \/ 2$/m);
  assert.match(shown.stdout, /^members:\s+user alice$/m);
  const big = await tern(['vm', 'create', 'big', '--template', 'sim', '--vcpus', '4', '--project', 'dev'], {
    as: alice,
  });
  oneLine(big);
  assert.equal(big.stderr, 'tern: project dev would exceed its vCPU quota: 1 of 2 in use, 4 more asked\n');
  const table = await tern(['project', 'list']);
  ok(table);
  assert.match(table.stdout, /^dev\s+1 \/ -\s+1 \/ 2\s+512 MiB \/ 4 GiB/m);
  const changed = await tern(['project', 'quota', 'dev', '--vms', '5', '--vcpus', '3']);
  ok(changed);
  assert.match(changed.stdout, /^VMs:\s+1 \/ 5$/m);
  assert.match(changed.stdout, /^vCPUs:\s+1 \/ 3$/m);
  const lifted = await tern(['project', 'quota', 'dev', '--vcpus', 'none']);
  ok(lifted);
  assert.match(lifted.stdout, /^vCPUs:\s+1 \(no limit\)$/m);
});

test('the audit log shows the refused create, by whom and why', async () => {
  const page = JSON.parse(
    (await tern(['audit', 'list', '--actor', 'alice', '--result', 'denied', '-o', 'json'])).stdout,
  ) as { items: AuditRecord[] };
  const refused = page.items.find((r) => r.action === 'POST /vms' && r.object === 'vms/big');
  assert.ok(refused, JSON.stringify(page.items));
  assert.equal(refused.status, 403);
  assert.match(refused.detail ?? '', /vCPU quota/);
  const table = await tern(['audit', 'list', '--actor', 'alice']);
  ok(table);
  assert.match(table.stdout, /^TIME\s+ACTOR\s+VIA\s+ACTION\s+OBJECT\s+RESULT\s+STATUS\s+FROM/m);
  assert.match(
    table.stdout,
    /\s+alice\s+token\s+POST \/vms\s+vms\/big\s+denied\s+403\s+127\.0\.0\.1\s+project dev/,
  );
  assert.match(table.stdout, /\s+alice\s+token\s+POST \/vms\s+vms\/small\s+ok\s+202/);
  const notAllowed = await tern(['audit', 'list'], { as: alice });
  oneLine(notAllowed);
  assert.match(notAllowed.stderr, /audit\.read/);
});

test('a secret set from stdin is revealed byte for byte, to its owner only', async () => {
  const value = 'line one\nünïcödé ✓\n  trailing spaces  \n';
  const set = await tern(['secret', 'set', 'db-password', '--kind', 'password', '--object', 'vm:small'], {
    as: alice,
    input: value,
  });
  ok(set);
  assert.match(set.stdout, /^owner:\s+alice$/m);
  const revealed = await tern(['secret', 'reveal', 'db-password'], { as: alice });
  ok(revealed);
  assert.equal(revealed.stdout, value);
  const list = await tern(['secret', 'list'], { as: alice });
  assert.match(list.stdout, /^db-password\s+password\s+vm:small\s+alice\s/m);
  assert.doesNotMatch(list.stdout, /trailing/);
});

test("a self-service user's escape sequences reach the admin's terminal written out, never acted on", async () => {
  // Clears the screen, retitles the terminal, and hides the rest of the line.
  const object = 'vm:x\x1b[2J\x1b]0;pwned\x07\x1b[8m';
  ok(await tern(['secret', 'set', 'innocent', '--object', object], { as: alice, input: 'v' }));
  const list = await tern(['secret', 'list']);
  ok(list);
  assert.equal(list.stdout.includes('\x1b'), false, 'no ESC byte on the admin’s terminal');
  assert.match(list.stdout, /^innocent\s+generic\s+vm:x\\x1b\[2J\\x1b\]0;pwned\\x07\\x1b\[8m\s+alice\s/m);
  const json = JSON.parse((await tern(['secret', 'list', '-o', 'json'])).stdout) as {
    name: string;
    object: string;
  }[];
  assert.equal(json.find((x) => x.name === 'innocent')?.object, object, 'JSON keeps the exact string');
});

test('keys backup writes a 0600 file that restores offline', async () => {
  const file = path.join(c.dir, 'keys.backup');
  const env = { TERN_KEY_PASSPHRASE: 'correct horse battery staple' };
  const r = await tern(['keys', 'backup', '--out', file], { env });
  ok(r);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.match(r.stdout, /keys restore --from /);
  const again = await tern(['keys', 'backup', '--out', file], { env });
  oneLine(again);
  assert.match(again.stderr, /exists; give --force/);
  const status = await tern(['keys', 'status']);
  ok(status);
  assert.match(status.stdout, /^KEY\s+ACTIVE\s+IN STORE\s+SECRETS/m);
  const restored = await new Promise<TernRun>((resolve) => {
    const child = spawn(
      path.join(repoRoot, 'node_modules', '.bin', 'node'),
      [
        path.join(repoRoot, 'src', 'manager', 'main.ts'),
        'keys',
        'restore',
        '--from',
        file,
        '--key-file',
        path.join(c.dir, 'restored', 'kek.json'),
      ],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr: '' }));
  });
  ok(restored);
  assert.match(restored.stdout, /1 keys added/);
});

test('a token made for someone else is shown once and narrowed to its scopes', async () => {
  const r = await tern([
    'token',
    'create',
    'ci',
    '--user',
    'alice',
    '--scope',
    'vm.read',
    '--expires-in-days',
    '7',
  ]);
  ok(r);
  assert.match(r.stdout, /^tern_\S+\n$/, 'the token alone on stdout');
  assert.match(r.stderr, /shown only this once/);
  const me = await tern(['whoami', '-o', 'json'], {
    env: { ...c.api.cliEnv, TERN_TOKEN: r.stdout.trim() },
  });
  ok(me);
  assert.deepEqual((JSON.parse(me.stdout) as Whoami).permissions, ['vm.read']);
  const bad = await tern(['token', 'create', 'x', '--expires-in-days', 'soon']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'tern: --expires-in-days takes a whole number\n');
});

test('a revoked token stops working, with a one-line 401 message', async () => {
  const mine = JSON.parse((await tern(['token', 'list', '-o', 'json'], { as: alice })).stdout) as {
    id: string;
    name: string;
  }[];
  const cli = mine.find((t) => t.name.startsWith('cli@'));
  assert.ok(cli, JSON.stringify(mine));
  ok(await tern(['token', 'revoke', cli.id], { as: alice }));
  const after = await tern(['whoami'], { as: alice });
  oneLine(after);
  assert.equal(after.code, 1);
  assert.equal(after.stderr, 'tern: the API token was revoked\n');
  const all = await tern(['token', 'list', '--all']);
  ok(all);
  assert.match(all.stdout, new RegExp(`^${cli.id}\\s+cli@\\S+\\s+alice\\s+revoked`, 'm'));
});

test('tern logout revokes the token and removes the config', async () => {
  ok(
    await tern(['login', '--url', c.manager.url, '--ca', c.api.caFile, '--user', 'alice'], {
      as: alice,
      env: { TERN_PASSWORD: 'alice-pw-1' },
    }),
  );
  const r = await tern(['logout'], { as: alice });
  ok(r);
  assert.match(r.stdout, /^logged out: token \S+ of alice is revoked/m);
  assert.ok(!fs.existsSync(alice.config));
  const tokens = JSON.parse((await tern(['token', 'list', '--all', '-o', 'json'])).stdout) as {
    name: string;
    user: string;
    revokedAt: string | null;
  }[];
  assert.ok(tokens.filter((t) => t.user === 'alice').every((t) => t.name === 'ci' || t.revokedAt));
});
