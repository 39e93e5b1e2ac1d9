import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { rejectsWith } from '../../testing.ts';
import type { AgentVm, MigrateRequest, MigrationReport } from '../../wire/agent.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { SimClock } from './clock.ts';
import { SimDriver } from './driver.ts';
import { planPrecopy } from './precopy.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-sim-'));
const drivers: SimDriver[] = [];
after(async () => {
  for (const d of drivers) await d.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function host(name: string, opts: Partial<ConstructorParameters<typeof SimDriver>[0]> = {}): SimDriver {
  const pool = path.join(dir, name);
  fs.mkdirSync(pool, { recursive: true });
  const d = new SimDriver({ hostname: name, pools: { local: pool }, bootDelayMs: 20, ...opts });
  drivers.push(d);
  return d;
}

function spec(name: string, memoryMiB = 512): VmSpec {
  return {
    id: randomUUID(),
    name,
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB,
    disks: [],
    nics: [{ mac: '52:54:00:12:34:56', network: { mode: 'user' } }],
  };
}

function until(d: SimDriver, id: string, ok: (vm: AgentVm) => boolean): Promise<AgentVm> {
  const now = d.get(id);
  if (now && ok(now)) return Promise.resolve(now);
  return new Promise((resolve) => {
    const on = (vm: AgentVm) => {
      if (vm.id === id && ok(vm)) {
        d.events.off('vm', on);
        resolve(vm);
      }
    };
    d.events.on('vm', on);
  });
}

const base = { memoryBytes: 4 * GiB, bandwidthBps: 1000 * MiB, downtimeLimitMs: 300, timeoutMs: 600_000 };

test('pre-copy converges in a few passes when the guest dirties far less than the link carries', () => {
  const s = planPrecopy({ ...base, dirtyBps: 20 * MiB, autoConverge: false });
  assert.ok(s.outcome?.converged, JSON.stringify(s.outcome));
  assert.ok(s.round <= 3, `${s.round} passes`);
  // The downtime is what was left, sent at the link's speed, and within the limit.
  assert.ok(s.outcome.downtimeMs <= 300);
  assert.ok(s.transferredBytes >= base.memoryBytes);
  assert.ok(s.elapsedMs > 4000 && s.elapsedMs < 5000, `${s.elapsedMs} ms`);
});

test('pre-copy fails at the timeout when the guest dirties faster than the link carries', () => {
  const s = planPrecopy({ ...base, dirtyBps: 2000 * MiB, autoConverge: false, timeoutMs: 60_000 });
  assert.equal(s.outcome?.converged, false);
  assert.equal(s.elapsedMs, 60_000);
  assert.match(s.outcome.converged === false ? s.outcome.reason : '', /did not converge within 60 s/);
});

test('auto-converge throttles a guest that dirties a little too fast until it converges', () => {
  const p = { ...base, dirtyBps: 1500 * MiB, timeoutMs: 120_000 };
  assert.equal(planPrecopy({ ...p, autoConverge: false }).outcome?.converged, false);
  const s = planPrecopy({ ...p, autoConverge: true });
  assert.ok(s.outcome?.converged, JSON.stringify(s.outcome));
  assert.ok(s.throttle >= 0.4, `throttle ${s.throttle}`);
});

test('auto-converge cannot save a guest that dirties a hundred times what the link carries', () => {
  const s = planPrecopy({ ...base, dirtyBps: 200_000 * MiB, autoConverge: true, timeoutMs: 60_000 });
  assert.equal(s.outcome?.converged, false);
  assert.equal(s.throttle, 0.99);
});

test('a VM runs at once and its guest answers after the boot delay', async () => {
  const d = host('boot');
  const s = spec('web');
  const started = Date.now();
  const vm = await d.run(s);
  assert.equal(vm.state, 'running');
  assert.equal(vm.guest.agent, 'unknown');
  assert.ok(vm.pid && vm.pid > 4_194_304, 'a pid no real process has');
  const up = await until(d, s.id, (v) => v.guest.agent === 'responding');
  assert.ok(Date.now() - started >= 15);
  assert.equal(up.guest.hostname, 'web');
  assert.deepEqual(up.guest.interfaces.find((i) => i.name === 'eth0')?.addresses, ['10.0.2.15/24']);
  assert.match(await d.consoleTail(s.id, 1000), /TERN-GUEST-READY hostname=web .* boot=1/);
  assert.equal((await d.run(s)).pid, vm.pid, 'running an running VM is a no-op');
});

test('state transitions: pause, resume, ACPI power off to a stopped tombstone, start again', async () => {
  const d = host('states');
  const s = spec('db');
  await d.run(s);
  await until(d, s.id, (v) => v.guest.agent === 'responding');
  assert.equal((await d.act(s.id, 'pause')).reason, 'paused by request');
  assert.equal((await d.act(s.id, 'resume')).state, 'running');
  await d.act(s.id, 'powerdown');
  const off = await until(d, s.id, (v) => v.state === 'stopped');
  assert.equal(off.pid, null);
  assert.equal(d.get(s.id)?.state, 'stopped', 'remembered as stopped');
  assert.equal((await d.act(s.id, 'kill')).state, 'stopped', 'forcing off what is off is done');
  await rejectsWith(d.act(s.id, 'pause'), 'conflict');
  assert.equal((await d.run(s)).state, 'running');
  const killed = await d.act(s.id, 'kill');
  assert.equal(killed.state, 'stopped');
  await d.forget(s.id);
  assert.equal(d.get(s.id), undefined);
});

test('a crash is reported with its reason, blocks actions, and is forgotten or restarted', async () => {
  const d = host('crash');
  const s = spec('app');
  await d.run(s);
  const gone = once(d.events, 'gone');
  d.crash(s.id);
  const vm = d.get(s.id)!;
  assert.equal(vm.state, 'crashed');
  assert.match(vm.reason ?? '', /without being asked/);
  await rejectsWith(d.act(s.id, 'resume'), 'conflict', /crashed/);
  await d.forget(s.id);
  assert.deepEqual(await gone, [s.id]);
  await d.run(s);
  d.crash(s.id);
  assert.equal((await d.run(s)).state, 'running', 'a crashed VM starts again');
});

test('a VM that would exceed the host memory is refused', async () => {
  const d = host('small', { memoryMiB: 1024 });
  const a = spec('a', 512);
  await d.run(a);
  await d.run(spec('b', 512));
  const err = await rejectsWith(
    d.run(spec('c', 256)),
    'hypervisor_error',
    /cannot allocate 256 MiB .* 0 MiB of 1024 MiB free/,
  );
  assert.equal(err.details?.freeMiB, 0);
  await d.act(a.id, 'kill');
  assert.equal((await d.run(spec('c', 256))).state, 'running', 'a stopped VM frees its memory');
  assert.equal(d.memoryInUseMiB(), 768);
});

test('faults: the next calls of an operation fail, or hang until released', async () => {
  const d = host('faults');
  d.faults.failNext('run', 2);
  await rejectsWith(d.run(spec('x')), 'hypervisor_error', /simulated failure of run/);
  await rejectsWith(d.run(spec('x')), 'hypervisor_error');
  await d.run(spec('x'));
  d.faults.hangNext('facts');
  let answered = false;
  const facts = d.facts().then((f) => {
    answered = true;
    return f;
  });
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(answered, false);
  assert.equal(d.faults.hanging, 1);
  d.faults.releaseHangs();
  const f = await facts;
  assert.equal(f.driver, 'sim');
  assert.equal(f.accelerator, 'sim');
  assert.equal(f.pools[0].totalBytes, 1024 ** 4);
});

test('power off: every VM goes, the host is unreachable; after power on they are crashed', async () => {
  const d = host('power');
  const s = spec('p');
  await d.run(s);
  const reach: boolean[] = [];
  d.faults.reachability.on('reachable', (r) => reach.push(r));
  d.powerOff();
  assert.deepEqual(d.list(), []);
  await rejectsWith(d.run(spec('q')), 'unavailable', /powered off/);
  d.powerOn();
  assert.deepEqual(reach, [false, true]);
  const vm = d.get(s.id)!;
  assert.equal(vm.state, 'crashed');
  assert.match(vm.reason ?? '', /while the agent was not running/);
});

const migrateReq = (uri: string, over: Partial<MigrateRequest> = {}): MigrateRequest => ({
  mode: 'live',
  uri,
  downtimeLimitMs: 300,
  bandwidthMiBps: 0,
  autoConverge: false,
  timeoutS: 600,
  ...over,
});

test('live migration between two hosts: the target waits paused, the source stops only at the end', async () => {
  const clock = new SimClock(1000);
  const a = host('mig-a', { clock, networkMiBps: 1000 });
  const b = host('mig-b', { clock, networkMiBps: 1000 });
  const s = spec('moving', 4096);
  await a.run(s);
  await until(a, s.id, (v) => v.guest.agent === 'responding');
  const inc = await b.prepareIncoming({ spec: s, mode: 'live', storage: 'shared', listenHost: '127.0.0.1' });
  assert.equal(inc.uri, `sim://mig-b/${s.id}`);
  assert.equal(b.get(s.id)?.state, 'paused');
  assert.equal(b.get(s.id)?.reason, 'incoming migration');
  assert.equal(b.memoryInUseMiB(), 4096);
  await rejectsWith(b.finishIncoming(s.id), 'conflict', /has not arrived/);
  const reports: MigrationReport[] = [];
  const done = await a.migrate(
    s.id,
    migrateReq(inc.uri),
    (r) => reports.push(r),
    new AbortController().signal,
  );
  assert.equal(done.type, 'done');
  assert.ok(done.downtimeMs <= 300, `${done.downtimeMs} ms downtime`);
  assert.ok(done.transferredBytes >= 4 * GiB);
  assert.ok(done.totalMs >= 4000, `${done.totalMs} simulated ms`);
  assert.ok(reports.some((r) => r.type === 'progress' && r.phase === 'memory'));
  assert.equal(a.get(s.id)?.state, 'paused', 'stopped for good, not yet released');
  await rejectsWith(a.act(s.id, 'resume'), 'conflict', /migrated/);
  const finished = await b.finishIncoming(s.id);
  assert.equal(finished.vm.state, 'running');
  assert.equal(finished.vm.guest.hostname, 'moving', 'the guest came along');
  assert.ok(finished.resumedAt >= done.stoppedAt);
  const gone = once(a.events, 'gone');
  await a.releaseMigrated(s.id);
  assert.deepEqual(await gone, [s.id]);
  assert.equal(a.get(s.id), undefined);
  assert.equal(a.memoryInUseMiB(), 0);
});

test('a migration that cannot converge fails at its timeout and the VM keeps running on the source', async () => {
  const clock = new SimClock(1000);
  const a = host('nc-a', { clock, networkMiBps: 100 });
  const b = host('nc-b', { clock });
  const s = spec('busy', 1024);
  await a.run(s);
  a.setDirtyRate(s.id, 500);
  const inc = await b.prepareIncoming({ spec: s, mode: 'live', storage: 'shared', listenHost: '127.0.0.1' });
  await rejectsWith(
    a.migrate(
      s.id,
      migrateReq(inc.uri, { timeoutS: 30, autoConverge: true }),
      () => {},
      new AbortController().signal,
    ),
    'timeout',
    /did not converge within 30 s.*keeps running/,
  );
  assert.equal(a.get(s.id)?.state, 'running');
  await b.abortIncoming(s.id);
  assert.equal(b.get(s.id), undefined);
  await rejectsWith(
    a.migrate(s.id, migrateReq(inc.uri), () => {}, new AbortController().signal),
    'hypervisor_error',
    /no simulated host waits for it/,
  );
});

test('a migration cancelled by its caller leaves the VM running on the source', async () => {
  const clock = new SimClock(100);
  const a = host('cx-a', { clock, networkMiBps: 100 });
  const b = host('cx-b', { clock });
  const s = spec('cancel', 8192);
  await a.run(s);
  const inc = await b.prepareIncoming({ spec: s, mode: 'live', storage: 'shared', listenHost: '127.0.0.1' });
  const ctl = new AbortController();
  const p = a.migrate(s.id, migrateReq(inc.uri), () => ctl.abort(), ctl.signal);
  await rejectsWith(p, 'cancelled', /keeps running/);
  assert.equal(a.get(s.id)?.state, 'running');
});

test('quick migration goes through a state file on a shared pool', async () => {
  const shared = path.join(dir, 'quick-shared');
  fs.mkdirSync(shared, { recursive: true });
  const clock = new SimClock(1000);
  const a = host('q-a', { clock, pools: { local: path.join(dir, 'q-a'), shared } });
  const b = host('q-b', { clock, pools: { local: path.join(dir, 'q-b'), shared } });
  const s = spec('quick', 2048);
  await a.run(s);
  await until(a, s.id, (v) => v.guest.agent === 'responding');
  const stateFile = { pool: 'shared', path: `migration/${s.id}.state` };
  await b.prepareIncoming({ spec: s, mode: 'quick', storage: 'shared', listenHost: '127.0.0.1', stateFile });
  await rejectsWith(b.finishIncoming(s.id), 'conflict', /has not arrived/);
  const reports: MigrationReport[] = [];
  const done = await a.migrate(
    s.id,
    { ...migrateReq(''), mode: 'quick', uri: undefined, stateFile },
    (r) => reports.push(r),
    new AbortController().signal,
  );
  assert.ok(fs.existsSync(path.join(shared, stateFile.path)));
  assert.ok(reports.every((r) => r.type !== 'progress' || r.phase === 'state'));
  assert.ok(done.downtimeMs >= 2000, 'the VM is suspended for the whole save');
  const vm = (await b.finishIncoming(s.id)).vm;
  assert.equal(vm.state, 'running');
  assert.equal(vm.guest.hostname, 'quick');
  await a.releaseMigrated(s.id);
});

test('mirrored storage: the target makes the volumes, the source fills them, abort removes them', async () => {
  const clock = new SimClock(1000);
  const a = host('m-a', { clock });
  const b = host('m-b', { clock });
  const disk = { pool: 'local', path: 'vms/m/disk0.qcow2' };
  fs.mkdirSync(path.join(dir, 'm-a', 'vms', 'm'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'm-a', disk.path), 'not really qcow2, but bytes to copy');
  const s = {
    ...spec('mirrored', 1024),
    disks: [{ volume: disk, format: 'qcow2' as const, readonly: false }],
  };
  await a.run(s);
  const req = {
    spec: s,
    mode: 'live' as const,
    storage: 'mirror' as const,
    listenHost: '127.0.0.1',
    create: [{ volume: disk, format: 'qcow2' as const, sizeBytes: 64 * MiB }],
  };
  const inc = await b.prepareIncoming(req);
  assert.deepEqual(inc.nbd?.drives, ['disk0']);
  const target = path.join(dir, 'm-b', disk.path);
  assert.ok(fs.existsSync(target), 'the target volume was made');
  await b.abortIncoming(s.id);
  assert.equal(fs.existsSync(target), false, 'and removed on abort');
  const again = await b.prepareIncoming(req);
  const phases = new Set<string>();
  await a.migrate(
    s.id,
    migrateReq(again.uri, { nbd: again.nbd! }),
    (r) => r.type === 'progress' && phases.add(r.phase),
    new AbortController().signal,
  );
  assert.deepEqual([...phases], ['disks', 'memory']);
  assert.equal(fs.readFileSync(target, 'utf8'), 'not really qcow2, but bytes to copy');
  await b.finishIncoming(s.id);
  await a.releaseMigrated(s.id);
});
