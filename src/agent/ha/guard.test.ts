/**
 * The guard with a real statefile, a real watchdog process and real processes standing in
 * for QEMU. The driver is a small stand-in over those processes: the guard needs only the
 * driver's list of VMs (with their pids) and its kill.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { readSlots } from '../../ha/statefile.ts';
import { createLogger } from '../../log.ts';
import type { AgentVm } from '../../wire/agent.ts';
import type { HaAssignment } from '../../wire/ha.ts';
import type { HypervisorDriver } from '../driver.ts';
import { HaGuard } from './guard.ts';
import { watchdogLogged } from './test-support.ts';
import { WatchdogLink, watchdogPaths } from './watchdog.ts';

const log = createLogger('guard-test', 'silent');
const children: ChildProcess[] = [];
const watchdogDirs: string[] = [];
const guards: HaGuard[] = [];

after(async () => {
  for (const g of guards) await g.close();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const dir of watchdogDirs) {
    try {
      process.kill(Number(fs.readFileSync(watchdogPaths(dir).pidfile, 'utf8')), 'SIGKILL');
    } catch {}
  }
});

function vmProcess(id: string): ChildProcess {
  const c = spawn('bash', ['-c', `exec -a qemu-system-x86_64-${id} sleep 600`], { stdio: 'ignore' });
  children.push(c);
  return c;
}

function processDriver(vms: Map<string, ChildProcess>): HypervisorDriver {
  return {
    list: () =>
      [...vms].map(
        ([id, c]) => ({ id, pid: c.exitCode === null && c.signalCode === null ? c.pid! : null }) as AgentVm,
      ),
    act: async (id: string) => {
      vms.get(id)?.kill('SIGKILL');
      return {} as AgentVm;
    },
  } as unknown as HypervisorDriver;
}

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

function within<T>(p: Promise<T>, boundMs: number, what: string): Promise<T> {
  return Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no ${what} within ${boundMs} ms`)), boundMs).unref(),
    ),
  ]);
}

function setup(opts: { watchdog: boolean }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-guard-'));
  const stateDir = path.join(dir, 'state');
  const shared = path.join(dir, 'shared');
  fs.mkdirSync(shared);
  const id = randomUUID();
  const vm = vmProcess(id);
  const vms = new Map([[id, vm]]);
  if (opts.watchdog) watchdogDirs.push(path.join(stateDir, 'ha'));
  const guard = new HaGuard({
    stateDir,
    pools: { shared },
    driver: processDriver(vms),
    log,
    heartbeatMs: 1000,
    tickMs: 100,
    ...(opts.watchdog ? {} : { watchdog: null }),
  });
  guards.push(guard);
  const assignment: HaAssignment = {
    enabled: true,
    timeoutS: 10,
    statefile: { pool: 'shared', path: 'ha.statefile' },
    slot: 2,
    protectedVms: [id],
    generation: 1,
  };
  return { stateDir, shared, statefile: path.join(shared, 'ha.statefile'), id, vm, guard, assignment };
}

test('the guard renews its slot, keeps its duties, and its watchdog fences an agent that stops', async () => {
  const s = setup({ watchdog: true });
  s.guard.start();
  const renewed = once(s.guard.events, 'renewed');
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: s.assignment });
  await within(renewed, 5000, 'renewal');
  const slot = (await readSlots(s.statefile, 3))[2];
  assert.equal(slot.state, 'valid');
  assert.equal(slot.state === 'valid' && slot.record.hostId, 'h1');
  assert.equal(slot.state === 'valid' && slot.record.fenced, false);
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(s.stateDir, 'ha', 'assignment.json'), 'utf8')), {
    host: 'h1',
    assignment: s.assignment,
  });
  // Renewed every timeoutS / 5 = 2 s: the next one carries the next counter.
  const [next] = (await within(once(s.guard.events, 'renewed'), 5000, 'second renewal')) as [number, boolean];
  assert.equal(slot.state === 'valid' && next, slot.record.counter + 1);

  // The watchdog is fed with the VM's pid and the time left before fencing.
  const peek = new WatchdogLink(path.join(s.stateDir, 'ha'));
  const status = await peek.connect(false);
  peek.close();
  assert.equal(status?.armed, true);
  assert.ok(
    status!.remainingMs! > 5000 && status!.remainingMs! <= 10_000,
    `remaining ${status!.remainingMs}`,
  );

  // The agent stops (or hangs): nobody renews, nobody feeds. The watchdog kills the VM once
  // the deadline the agent last promised has passed, and not before.
  const stoppedAt = performance.now();
  await s.guard.close();
  assert.equal(await exitOf(s.vm, 10_000 + 3000), 'SIGKILL');
  assert.ok(performance.now() - stoppedAt > 5000, 'killed long before the deadline');
  await watchdogLogged(path.join(s.stateDir, 'ha'), /"msg":"killed"/);
});

test('losing both the lease and the manager fences: VMs killed, slot marked, back once both are', async () => {
  const s = setup({ watchdog: false });
  // The statefile's storage is gone from the start: renewals fail.
  fs.rmSync(s.shared, { recursive: true });
  s.guard.start();
  const fenced = once(s.guard.events, 'fenced');
  const answeredAt = performance.now();
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: s.assignment });
  assert.equal(s.guard.fenced, false);
  // Only this one answer from the manager, then silence.
  assert.deepEqual(await within(fenced, 10_000 + 3000, 'fence'), [true]);
  const took = performance.now() - answeredAt;
  assert.ok(took >= 10_000 - 50, `fenced after ${took} ms, before the 10 s timeout`);
  assert.equal(s.guard.fenced, true);
  assert.equal(await exitOf(s.vm, 3000), 'SIGKILL');

  // Storage back, but no manager: still fenced; the slot says so. (A write begun before the
  // fence may land first, unmarked: wait for the one that marks it.)
  const marked = new Promise<void>((resolve) => {
    const onRenewed = (_counter: number, fenced: boolean) => {
      if (!fenced) return;
      s.guard.events.off('renewed', onRenewed);
      resolve();
    };
    s.guard.events.on('renewed', onRenewed);
  });
  fs.mkdirSync(s.shared);
  await within(marked, 5000, 'renewal marked fenced');
  assert.equal(s.guard.fenced, true);
  const slot = (await readSlots(s.statefile, 3))[2];
  assert.equal(slot.state === 'valid' && slot.record.fenced, true);

  // The manager answers too: out of fenced mode on the next renewal.
  const unfenced = once(s.guard.events, 'fenced');
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: s.assignment });
  assert.deepEqual(await within(unfenced, 5000, 'unfence'), [false]);
  await s.guard.close();
});

test('HA disabled: the watchdog is disarmed', async () => {
  const s = setup({ watchdog: true });
  s.guard.start();
  const fed = once(s.guard.events, 'fed');
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: s.assignment });
  assert.equal((await within(fed, 5000, 'feed'))[1], 1);
  const peek = new WatchdogLink(path.join(s.stateDir, 'ha'));
  assert.equal((await peek.connect(false))?.armed, true);
  const disabled = once(s.guard.events, 'state');
  s.guard.heartbeatAnswered({
    host: 'h1',
    state: 'online',
    ha: { ...s.assignment, enabled: false, generation: 2 },
  });
  assert.deepEqual(await within(disabled, 5000, 'state change'), ['disabled']);
  assert.equal((await peek.connect(false))?.armed, false);
  peek.close();
  await s.guard.close();
  // Nothing armed, nothing killed.
  assert.equal(s.vm.exitCode, null);
});

test('an answer to an older heartbeat does not bring back the duties a newer one replaced', () => {
  const s = setup({ watchdog: false });
  const newer = { ...s.assignment, protectedVms: [s.id, randomUUID()].sort(), generation: 2 };
  // The manager was slow: the second beat's answer (new duties) came before the first's.
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: newer }, 2000);
  s.guard.heartbeatAnswered({ host: 'h1', state: 'online', ha: s.assignment }, 1000);
  assert.equal(s.guard.generation, 2);
  const kept = JSON.parse(fs.readFileSync(path.join(s.stateDir, 'ha', 'assignment.json'), 'utf8'));
  assert.equal(kept.assignment.generation, 2);
});
