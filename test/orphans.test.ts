/**
 * An all-in-one Tern (`tern up`: manager and agent in one process) killed while it creates and
 * starts VMs: after its restart, recovery waits for the local agent, every task ends as it
 * says, and no QEMU or VM directory is left that the inventory does not know. Then orphans —
 * what a host holds for VMs the inventory lost — are reported with an alert, and adopted or
 * removed (a running one only when forced).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import type { Alert } from '../src/wire/alert.ts';
import type { ManagerEvent } from '../src/wire/event.ts';
import type { Orphan, OrphanAdopted } from '../src/wire/orphan.ts';
import type { Task } from '../src/wire/task.ts';
import type { Vm } from '../src/wire/vm.ts';
import { freePorts, guestDir, repoRoot, TernProcess, TestApi, tempDir } from './harness.ts';

const dir = tempDir('tern-orphans');
const config = path.join(dir, 'cli.json');
const pools = [path.join(dir, 'pools', 'local'), path.join(dir, 'pools', 'shared')];
let ports: number[];
let aio: TernProcess | undefined;
let api: TestApi;

async function up(): Promise<void> {
  process.env.TERN_CONFIG = config;
  process.env.TERN_GUEST_DIR = guestDir();
  aio = new TernProcess(
    'src/cli/main.ts',
    [
      'up',
      '--data-dir',
      dir,
      '--port',
      String(ports[0]),
      '--agent-port',
      String(ports[1]),
      '--cluster-port',
      String(ports[2]),
    ],
    path.join(dir, 'up.log'),
  );
  await aio.waitForLine('Tern is running', 180_000);
  const { url, token } = JSON.parse(fs.readFileSync(config, 'utf8')) as { url: string; token: string };
  api = new TestApi(url, token, path.join(dir, 'manager', 'pki', 'ca.crt'));
}

/** VM ids of the QEMU processes that run from this test's data directory. */
function qemuVmIds(): string[] {
  const ids: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (!cmd.startsWith('qemu-system') || !cmd.includes(dir)) continue;
      const id = /vms\/([0-9a-f-]{36})\//.exec(cmd)?.[1];
      if (id) ids.push(id);
    } catch {
      // The process ended while we looked.
    }
  }
  return ids;
}

/** VM directories in the pools. */
function vmDirs(): string[] {
  return pools.flatMap((p) =>
    fs.existsSync(path.join(p, 'vms')) ? fs.readdirSync(path.join(p, 'vms')) : [],
  );
}

/** Resolves with the first event that `pick` accepts. */
async function firstEvent<T>(pick: (e: ManagerEvent) => T | undefined, timeoutMs: number, what: string) {
  const stop = new AbortController();
  try {
    return await new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${timeoutMs} ms`)), timeoutMs);
      stop.signal.addEventListener('abort', () => clearTimeout(timer));
      api
        .events(
          '',
          (e) => {
            const hit = pick(e);
            if (hit !== undefined) resolve(hit);
          },
          stop.signal,
        )
        .catch((err) => {
          if (!stop.signal.aborted) reject(err);
        });
    });
  } finally {
    stop.abort();
  }
}

before(async () => {
  ports = await freePorts(3);
  await up();
});

after(async () => {
  await aio?.kill();
  for (const id of qemuVmIds()) {
    for (const entry of fs.readdirSync('/proc')) {
      try {
        const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
        if (cmd.startsWith('qemu-system') && cmd.includes(id)) process.kill(Number(entry), 'SIGKILL');
      } catch {
        // Gone already.
      }
    }
  }
});

test('an all-in-one killed during vm create --start: recovery waits for its agent, nothing is left unknown', async () => {
  const names = ['k-1', 'k-2', 'k-3', 'k-4', 'k-5'];
  const stopped = await api.task('POST', '/api/v1/vms', { name: 'k-s', template: 'tiny' });
  assert.equal(stopped.state, 'succeeded', JSON.stringify(stopped.error));
  // Listen first, so the kill follows the first QEMU start closely.
  const starting = firstEvent(
    (e) =>
      e.type === 'task' && e.task.kind === 'vm.create' && e.task.step === 'starting' ? true : undefined,
    120_000,
    'creation reaching its start',
  );
  const accepted = await Promise.all(
    names.map((name) =>
      api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', { name, template: 'tiny', start: true }),
    ),
  );
  const start = (await api.request<{ task: Task }>('POST', '/api/v1/vms/k-s/start')).task;
  await starting;
  await aio!.kill();

  await up();
  const tasks = await Promise.all(accepted.map((a) => api.settle(a.task)));
  const vms = (await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=100')).items;
  const known = new Set(vms.map((v) => v.id));
  assert.deepEqual(
    qemuVmIds().filter((id) => !known.has(id)),
    [],
    'no QEMU runs for a VM the inventory does not know',
  );
  assert.deepEqual(
    vmDirs().filter((id) => !known.has(id)),
    [],
    'no VM directory is left in a pool that the inventory does not know',
  );
  for (const [i, t] of tasks.entries()) {
    const vm = vms.find((v) => v.id === accepted[i].vm.id);
    // Honest ends: a creation that succeeded left a running VM; one that failed left none.
    if (t.state === 'succeeded') assert.equal(vm?.state, 'running', `${names[i]}: ${JSON.stringify(vm)}`);
    else {
      assert.equal(vm, undefined, `${names[i]} failed (${t.error?.message}) but is in the inventory`);
      assert.doesNotMatch(t.error?.message ?? '', /ECONNREFUSED/);
    }
  }
  assert.ok(
    tasks.every((t) => t.state === 'succeeded'),
    `every creation resumed: ${tasks.map((t) => `${t.state} ${t.error?.message ?? ''}`).join('; ')}`,
  );
  // An interrupted start resumes once the host is back, as it says.
  const started = await api.settle(start);
  assert.equal(started.state, 'succeeded', JSON.stringify(started.error));
  assert.ok(
    [started, ...tasks].some((t) => t.log?.some((l) => l.line === 'waiting for host local to connect')),
    'recovery waited for the local agent',
  );
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/k-s')).state, 'running');
  const running = await api.request<{ items: Task[] }>('GET', '/api/v1/tasks?state=running');
  assert.deepEqual(running.items, []);
});

test('orphans are named in an alert and adopted or removed; a running one is removed only when forced', async () => {
  const vms = (await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=100')).items;
  const [lost, doomed] = [vms.find((v) => v.name === 'k-1')!, vms.find((v) => v.name === 'k-2')!];
  // A half-made VM directory: a copy the agent was writing when it died.
  const halfMade = '00000000-0000-4000-8000-0000000000cc';
  fs.mkdirSync(path.join(pools[1], 'vms', halfMade), { recursive: true });
  fs.writeFileSync(path.join(pools[1], 'vms', halfMade, 'disk0.qcow2.partial'), Buffer.alloc(65536, 1));
  fs.writeFileSync(path.join(pools[1], 'vms', halfMade, 'disk1.qcow2'), Buffer.alloc(4096, 1));
  // The inventory loses two running VMs while Tern is down, as a crash before the fix did.
  await aio!.kill();
  const db = new DatabaseSync(path.join(dir, 'manager', 'tern.db'));
  db.prepare('DELETE FROM vms WHERE id IN (?, ?)').run(lost.id, doomed.id);
  db.close();

  await up();
  const alert = firstEvent(
    (e) =>
      e.type === 'alert' && e.alert.id.endsWith(':orphans') && !e.alert.clearedAt ? e.alert : undefined,
    120_000,
    'orphan alert',
  );
  // Raised before the stream connected, or after.
  const raised: Alert =
    (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items.find((a) =>
      a.id.endsWith(':orphans'),
    ) ?? (await alert);
  alert.catch(() => {});
  for (const id of [lost.id, doomed.id, halfMade]) assert.match(raised.message, new RegExp(id));

  const cli = execFileSync(process.execPath, [path.join(repoRoot, 'src/cli/main.ts'), 'host', 'orphans'], {
    encoding: 'utf8',
    env: { ...process.env, TERN_CONFIG: config },
  });
  for (const id of [lost.id, doomed.id, halfMade]) assert.match(cli, new RegExp(id));
  const listed = (await api.request<{ items: Orphan[] }>('GET', '/api/v1/hosts/local/orphans')).items;
  assert.equal(listed.find((o) => o.id === doomed.id)?.qemu?.state, 'running');

  // A running orphan is removed only when asked explicitly.
  const refused = await api.raw('DELETE', `/api/v1/hosts/local/orphans/${doomed.id}`);
  assert.equal(refused.status, 409);
  assert.equal(qemuVmIds().includes(doomed.id), true, 'and it still runs');
  assert.equal((await api.raw('DELETE', `/api/v1/hosts/local/orphans/${doomed.id}?force=true`)).status, 204);
  assert.equal(qemuVmIds().includes(doomed.id), false);
  assert.equal(vmDirs().includes(doomed.id), false);
  const now = (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items.find((a) =>
    a.id.endsWith(':orphans'),
  );
  assert.doesNotMatch(now?.message ?? '', new RegExp(doomed.id), 'the alert names what is orphaned now');
  assert.match(now?.message ?? '', new RegExp(lost.id));

  const back = await api.request<OrphanAdopted>('POST', `/api/v1/hosts/local/orphans/${lost.id}/adopt`);
  assert.deepEqual([back.as, back.vm], ['vm', 'k-1']);
  assert.equal((await api.request<Vm>('GET', '/api/v1/vms/k-1')).state, 'running');

  const kept = await api.request<OrphanAdopted>('POST', `/api/v1/hosts/local/orphans/${halfMade}/adopt`);
  assert.deepEqual(kept.kept, [{ pool: 'shared', path: `vms/${halfMade}/disk1.qcow2` }]);
  assert.deepEqual(fs.readdirSync(path.join(pools[1], 'vms', halfMade)), ['disk1.qcow2']);

  assert.deepEqual((await api.request<{ items: Orphan[] }>('GET', '/api/v1/hosts/local/orphans')).items, []);
  const active = (await api.request<{ items: Alert[] }>('GET', '/api/v1/alerts')).items;
  assert.equal(
    active.some((a) => a.id.endsWith(':orphans')),
    false,
    'the alert clears once nothing is orphaned',
  );
});
