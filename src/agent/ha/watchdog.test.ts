/**
 * The watchdog as a real process, protecting real processes that stand in for QEMU: their
 * command line names the VM id, as a QEMU's names its run directory.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { watchdogLogged } from './test-support.ts';
import { startWatchdog, WatchdogLink, watchdogPaths } from './watchdog.ts';

const haDir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tern-watchdog-')), 'ha');
const children: ChildProcess[] = [];

/** A process whose command line contains `id` (when given), like the QEMU of that VM. */
function dummy(id?: string): ChildProcess {
  const argv0 = id ? `qemu-system-x86_64-${id}` : 'qemu-system-x86_64';
  const c = spawn('bash', ['-c', `exec -a ${argv0} sleep 600`], { stdio: 'ignore' });
  children.push(c);
  return c;
}

/** Resolves with the signal that ended the process; rejects if it is still alive after `boundMs`. */
function exitOf(c: ChildProcess, boundMs: number): Promise<NodeJS.Signals | null> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c.signalCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`pid ${c.pid} still alive after ${boundMs} ms`)),
      boundMs,
    );
    c.once('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve(signal);
    });
  });
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;
const watchdogPid = () => Number(fs.readFileSync(watchdogPaths(haDir).pidfile, 'utf8'));

after(() => {
  for (const c of children) if (alive(c)) c.kill('SIGKILL');
  try {
    process.kill(watchdogPid(), 'SIGKILL');
  } catch {}
});

test('an agent that stops feeding: the watchdog kills the protected process after the timeout', async () => {
  const link = new WatchdogLink(haDir, { idleExitMs: 60_000 });
  const first = await link.connect();
  assert.deepEqual(first, { ok: true, armed: false, remainingMs: null, fired: 0 });
  const id = randomUUID();
  const vm = dummy(id);
  const fedAt = performance.now();
  const s = await link.feed(800, [{ id, pid: vm.pid! }]);
  assert.equal(s.armed, true);
  // The agent goes away without a word, as a crashed one does: that does not disarm.
  link.close();
  assert.equal(await exitOf(vm, 800 + 3000), 'SIGKILL');
  const took = performance.now() - fedAt;
  assert.ok(took >= 790, `killed after ${took} ms, before the 800 ms timeout`);
  await watchdogLogged(haDir, new RegExp(`"msg":"killed","vm":"${id}","pid":${vm.pid}`));
});

test('a restarted agent finds the running watchdog and its deadline', async () => {
  const pid = watchdogPid();
  const a = new WatchdogLink(haDir);
  await a.connect();
  const id = randomUUID();
  const vm = dummy(id);
  await a.feed(60_000, [{ id, pid: vm.pid! }]);
  a.close();
  const b = new WatchdogLink(haDir);
  const s = await b.connect();
  assert.equal(watchdogPid(), pid, 'no second watchdog was started');
  assert.equal(s.armed, true);
  assert.ok(s.remainingMs! > 50_000 && s.remainingMs! <= 60_000, `remaining ${s.remainingMs}`);
  // Starting one more says another runs, and leaves that one alone.
  await startWatchdog(watchdogPaths(haDir));
  assert.equal(watchdogPid(), pid);
  assert.equal((await b.disarm()).armed, false);
  b.close();
  assert.ok(alive(vm));
});

test('a fed watchdog does not act; once feeding stops, it does', async () => {
  const link = new WatchdogLink(haDir);
  await link.connect();
  const id = randomUUID();
  const vm = dummy(id);
  // Fed every 100 ms with a 500 ms timeout, for 2 s: four times the timeout.
  const feeding = setInterval(() => void link.feed(500, [{ id, pid: vm.pid! }]).catch(() => {}), 100);
  await link.feed(500, [{ id, pid: vm.pid! }]);
  await assert.rejects(exitOf(vm, 2000), /still alive/);
  clearInterval(feeding);
  assert.equal(await exitOf(vm, 500 + 3000), 'SIGKILL');
  link.close();
});

test('a disarmed watchdog does not act', async () => {
  const link = new WatchdogLink(haDir);
  await link.connect();
  const id = randomUUID();
  const vm = dummy(id);
  const before = (await link.feed(300, [{ id, pid: vm.pid! }])).fired;
  const s = await link.disarm();
  assert.deepEqual(s, { ok: true, armed: false, remainingMs: null, fired: before });
  // Nothing is there to wait for: watch the process over three times the timeout.
  await assert.rejects(exitOf(vm, 1000), /still alive/);
  assert.equal((await link.disarm()).fired, before);
  link.close();
});

test('a pid that is not the VM it was given for is never killed', async () => {
  const link = new WatchdogLink(haDir);
  await link.connect();
  const id = randomUUID();
  const vm = dummy(id);
  // Stands for a recycled pid: some other process now has it.
  const stranger = dummy();
  const strangerId = randomUUID();
  await link.feed(300, [
    { id: strangerId, pid: stranger.pid! },
    { id, pid: vm.pid! },
  ]);
  link.close();
  // Both are handled in one go, so once the VM is dead the stranger has been judged too.
  assert.equal(await exitOf(vm, 300 + 3000), 'SIGKILL');
  assert.ok(alive(stranger));
  await watchdogLogged(haDir, new RegExp(`"msg":"pid is no longer the VM; not killed","vm":"${strangerId}"`));
});

test('bad input gets an error reply and the watchdog carries on', async () => {
  const pid = watchdogPid();
  const sock = net.createConnection(watchdogPaths(haDir).socket);
  sock.setEncoding('utf8');
  let got = '';
  let arrived = () => {};
  sock.on('data', (d: string) => {
    got += d;
    arrived();
  });
  const lines = (n: number) =>
    new Promise<Record<string, unknown>[]>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${n} lines within 5 s: ${got}`)), 5000);
      arrived = () => {
        const all = got.split('\n').filter(Boolean);
        if (all.length < n) return;
        clearTimeout(timer);
        resolve(all.slice(0, n).map((l) => JSON.parse(l)));
      };
      arrived();
    });
  const bad = [
    'not json',
    '[]',
    'null',
    '{"disarm":false}',
    '{"timeoutMs":-5,"vms":[]}',
    '{"timeoutMs":1000,"vms":[{"id":"x","pid":5}]}',
    `{"timeoutMs":1000,"vms":[{"id":"${randomUUID()}","pid":1}]}`,
    `{"timeoutMs":1000,"vms":[{"id":"${randomUUID()}","pid":"12"}]}`,
    '{"timeoutMs":1000,"vms":[],"extra":1}',
    '{"__proto__":{"disarm":true}}',
  ];
  sock.write(`${bad.join('\n')}\n`);
  const replies = await lines(1 + bad.length);
  assert.equal(replies[0].ok, true, 'the greeting');
  for (const r of replies.slice(1)) {
    assert.equal(r.ok, false);
    assert.equal(typeof r.error, 'string');
    assert.equal(r.armed, false);
  }
  // An endless line: refused and the connection closed.
  const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
  sock.write('x'.repeat(2 * 1024 * 1024));
  await closed;
  assert.match(got, /line longer than/);
  // Still there, still working.
  assert.equal(watchdogPid(), pid);
  const link = new WatchdogLink(haDir);
  assert.equal((await link.connect()).ok, true);
  link.close();
});

test('a disarmed watchdog with no agent leaves after its idle time', async () => {
  const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tern-watchdog-idle-')), 'ha');
  const link = new WatchdogLink(dir, { idleExitMs: 200 });
  await link.connect();
  const { pidfile } = watchdogPaths(dir);
  const gone = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the idle watchdog is still there after 5 s')), 5000);
    const w = fs.watch(dir, () => {
      if (fs.existsSync(pidfile)) return;
      clearTimeout(timer);
      w.close();
      resolve();
    });
  });
  link.close();
  await gone;
  assert.match(fs.readFileSync(watchdogPaths(dir).log, 'utf8'), /idle and disarmed: exiting/);
});
