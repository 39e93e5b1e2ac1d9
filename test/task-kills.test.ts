/**
 * Kill-during-task, for every task kind (vm.create and vm.start also in recovery.test.ts and
 * orphans.test.ts, with real QEMU; here also a create killed before its task was recorded). Each case
 * submits its task, SIGKILLs the manager at the step that matters, restarts it, and asserts that
 * the task ended and that the inventory tells what the hosts really have: VM states, disks and
 * their sizes, files, no stray VM, no half-written volume, no qemu-img left running.
 *
 * A real manager process (so the kill is a real one) drives two simulated hosts in this process:
 * a fault holds a task at the driver call of its dangerous step, and is let go after the kill, so
 * the host finishes what it was asked while no manager is there to record it. Storage is real on
 * simulated hosts: every volume, copy and resize is made by qemu-img.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { type SimHost, type SimHosts, startSimHosts } from '../src/agent/sim/cluster.ts';
import type { SimOperation } from '../src/agent/sim/faults.ts';
import type { Logger } from '../src/log.ts';
import { joinGroups } from '../src/manager/cluster/groups.ts';
import { openDatabase } from '../src/manager/db/database.ts';
import { EventBus } from '../src/manager/events/bus.ts';
import { openKeyStore } from '../src/manager/secrets/keystores/open.ts';
import { SecretStore } from '../src/manager/secrets/store.ts';
import { userDataSecret } from '../src/manager/vms/create.ts';
import { planVm } from '../src/manager/vms/plan.ts';
import { newVmRow, VmStore } from '../src/manager/vms/store.ts';
import type { JoinToken } from '../src/wire/host.ts';
import type { Task } from '../src/wire/task.ts';
import type { Template } from '../src/wire/template.ts';
import type { Vm } from '../src/wire/vm.ts';
import { freePorts, guestDir, managerProcess, type TernProcess, TestApi, tempDir } from './harness.ts';
import { until } from './sim-harness.ts';

const silent: Logger = pino({ level: 'silent' }, pino.destination('/dev/null'));
const dir = tempDir('tern-kills');
const importDir = path.join(dir, 'import');
let ports: number[];
let manager: TernProcess;
let api: TestApi;
let sim: SimHosts;

function startManager(): TernProcess {
  return managerProcess(dir, ports[0]!, ports[1]!, ['--guest-dir', guestDir(), '--guest-pool', 'shared']);
}

before(async () => {
  ports = await freePorts(2);
  manager = startManager();
  const template = manager.waitForLine('tiny template ready', 120_000);
  template.catch(() => {});
  await manager.waitForLine('manager listening');
  const tokenFile = path.join(dir, 'admin.token');
  await until('the admin token written', 30_000, async () => fs.existsSync(tokenFile) || undefined);
  api = new TestApi(
    `https://127.0.0.1:${ports[0]}`,
    fs.readFileSync(tokenFile, 'utf8').trim(),
    path.join(dir, 'pki', 'ca.crt'),
  );
  sim = await startSimHosts(2, {
    baseDir: dir,
    log: silent,
    driver: { cores: 16, memoryMiB: 32 * 1024, bootDelayMs: 50 },
    // Either host may take an import: both read from the same directory.
    agent: { importDirs: [importDir] },
    join: async (name) => {
      const t = await api.request<JoinToken>('POST', '/api/v1/hosts', { name });
      return { manager: `https://127.0.0.1:${ports[1]}`, token: t.token, caFingerprint: t.caFingerprint };
    },
  });
  await hostsOnline();
  await template;
});

after(async () => {
  // The hosts first: a manager gone leaves them nothing to wait on.
  await sim?.close();
  await manager?.kill();
  if (!process.env.KEEP) fs.rmSync(dir, { recursive: true, force: true });
});

async function hostsOnline(): Promise<void> {
  for (const h of sim.hosts)
    await api.waitHost(
      h.name,
      (x) => (x.state === 'online' || x.state === 'maintenance') && x.facts !== null,
      60_000,
      'online',
    );
}

const ended = (t: Task) => t.state === 'succeeded' || t.state === 'failed' || t.state === 'cancelled';

/**
 * Submits a task, waits for `at` (the task at its dangerous step), kills the manager, runs
 * `meanwhile` (the hosts carry on), restarts the manager and waits for the task to end.
 */
async function killDuring(
  submit: () => Promise<{ task: Task }>,
  at: (task: Task) => Promise<void>,
  meanwhile: () => void = () => {},
): Promise<Task> {
  const { task } = await submit();
  await at(task);
  await manager.kill();
  meanwhile();
  manager = startManager();
  await manager.waitForLine('manager listening');
  await hostsOnline();
  const done = await api.waitTask(task.id, ended, 60_000, 'ended');
  return api.request<Task>('GET', `/api/v1/tasks/${done.id}?log=true`);
}

/** The task holds at the start of `op` on `host` (armed before it is submitted). */
function holding(host: SimHost, op: SimOperation) {
  host.driver.faults.hangNext(op);
  return () =>
    until(
      `${op} called on ${host.name}`,
      30_000,
      async () => host.driver.faults.hanging > 0 || undefined,
    ).then(() => {});
}

const running = (task: Task) =>
  api.waitTask(task.id, (t) => t.state === 'running' || ended(t), 30_000, 'running').then(() => {});

const hostOf = (vm: Vm) => sim.host(vm.host!);
const fileOf = (host: SimHost, ref: { pool: string; path: string }) =>
  path.join(host.pools[ref.pool], ref.path);
const vm = (name: string) => api.request<Vm>('GET', `/api/v1/vms/${name}`);

function virtualSize(file: string): number {
  const out = execFileSync('qemu-img', ['info', '-U', '--output=json', file], { encoding: 'utf8' });
  return (JSON.parse(out) as { 'virtual-size': number })['virtual-size'];
}

function filesUnder(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return (fs.readdirSync(root, { recursive: true }) as string[]).map((f) => path.join(root, f));
}

/** What differs between the inventory and the hosts (empty when it tells the truth). */
async function untruths(): Promise<string[]> {
  const out: string[] = [];
  const { items } = await api.request<{ items: Vm[] }>('GET', '/api/v1/vms?limit=1000');
  const known = new Set(items.map((v) => v.id));
  for (const v of items) {
    if (!v.host) continue;
    const host = hostOf(v);
    const real = host.driver.get(v.id);
    const realState = real && real.state !== 'shutdown' ? real.state : 'stopped';
    if (v.state !== realState)
      out.push(`${v.name} is ${v.state} in the inventory, ${realState} on ${host.name}`);
    for (const [i, d] of v.disks.entries()) {
      const file = fileOf(host, d.volume);
      if (!fs.existsSync(file)) out.push(`${v.name} disk ${i} (${d.volume.path}) is gone`);
      else if (virtualSize(file) !== d.sizeBytes)
        out.push(`${v.name} disk ${i} is ${virtualSize(file)} bytes, ${d.sizeBytes} in the inventory`);
    }
    if (
      real?.state === 'running' &&
      real.guest.disks.length > 0 &&
      real.guest.disks.length !== v.disks.length
    )
      out.push(
        `${v.name} has ${real.guest.disks.length} disks on its host, ${v.disks.length} in the inventory`,
      );
  }
  for (const v of items) {
    // A running VM's NICs on managed networks, and their links, are what its host runs.
    const spec = v.host && v.state === 'running' ? hostOf(v).driver.spec(v.id) : undefined;
    if (!spec) continue;
    const nicsOf = (nics: Vm['nics']) =>
      nics
        .filter((n) => n.network.mode === 'network')
        .map((n) => `${n.mac} ${n.link ?? 'up'}`)
        .sort()
        .join(', ');
    if (nicsOf(v.nics) !== nicsOf(spec.nics))
      out.push(`${v.name} has NICs [${nicsOf(spec.nics)}] on its host, [${nicsOf(v.nics)}] in the inventory`);
  }
  for (const h of sim.hosts)
    for (const r of h.driver.list())
      if (!known.has(r.id) && r.state === 'running')
        out.push(`${r.name} runs on ${h.name}, unknown to the inventory`);
  for (const f of filesUnder(dir)) if (f.endsWith('.partial')) out.push(`${f} is left half-written`);
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmd.startsWith('qemu-img') && cmd.includes(dir))
        out.push(`qemu-img still runs: ${cmd.replaceAll('\0', ' ')}`);
    } catch {
      // It ended while we looked.
    }
  }
  const busy = await api.request<{ items: Task[] }>('GET', '/api/v1/tasks?state=running');
  for (const t of busy.items) out.push(`task ${t.kind} ${t.id} still running`);
  return out;
}

/** The inventory comes to tell the truth (hosts report after a restart), within a bound. */
async function assertTruthful(): Promise<void> {
  let last: string[] = [];
  await until('the inventory matching the hosts', 20_000, async () => {
    last = await untruths();
    return last.length === 0 || undefined;
  }).catch(() => assert.fail(last.join('\n')));
}

async function makeVm(
  name: string,
  opts: { start?: boolean; extra?: number[]; diskGiB?: number; nics?: unknown[] } = {},
) {
  const t = await api.task('POST', '/api/v1/vms', {
    name,
    template: 'tiny',
    start: opts.start ?? true,
    ...(opts.nics ? { nics: opts.nics } : {}),
    ...(opts.extra ? { extraDisksGiB: opts.extra } : {}),
    ...(opts.diskGiB ? { diskGiB: opts.diskGiB } : {}),
  });
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  if (opts.start ?? true) await api.waitVm(name, (v) => v.guest.agent === 'responding', 30_000, 'booted');
  return vm(name);
}

test('vm.disk.resize: grown by the host after the kill, the resumed task records the real size', async () => {
  const v = await makeVm('k-resize');
  const before = v.disks[0].sizeBytes;
  const host = hostOf(v);
  const t = await killDuring(
    () => api.request('POST', '/api/v1/vms/k-resize/disks/0/resize', { sizeGiB: 1 }),
    holding(host, 'resizeDisk'),
    () => {
      host.driver.faults.releaseHangs();
      // The host applied the growth; asking it again fails.
      host.driver.faults.failNext('resizeDisk', 5);
    },
  );
  assert.ok(ended(t));
  const after = await vm('k-resize');
  assert.notEqual(after.disks[0].sizeBytes, before);
  assert.equal(after.disks[0].sizeBytes, 1024 ** 3);
  await assertTruthful();
});

/** One row of the table: what to make first, the request, where to kill, what must hold after. */
interface KillCase {
  kind: string;
  /** The step the kill lands on. */
  at: string;
  setup?: () => Promise<void>;
  submit: () => Promise<{ task: Task }>;
  check?: (t: Task) => Promise<void>;
}

const post = (p: string, body?: unknown) => () => api.request<{ task: Task }>('POST', p, body);
const del = (p: string) => () => api.request<{ task: Task }>('DELETE', p);
const onHostOf = async (name: string, op: SimOperation) => holding(hostOf(await vm(name)), op);
/** The NIC a case works on, known once its VM is made. */
let nicMac = '';
/** The managed network the NIC cases use, made once. */
async function knet(): Promise<void> {
  const have = await api.request<{ items: { name: string }[] }>('GET', '/api/v1/networks');
  if (!have.items.some((n) => n.name === 'k-net'))
    await api.request('POST', '/api/v1/networks', {
      name: 'k-net',
      type: 'isolated',
      subnet: '10.99.0.0/24',
    });
}
/** What `setup` arms to hold the task at its step; unset, the kill comes as soon as it runs. */
let holdOn: (() => Promise<void>) | null = null;

const table: KillCase[] = [
  {
    kind: 'vm.stop',
    at: 'the force-off asked of the host',
    setup: async () => {
      await makeVm('k-stop');
      holdOn = await onHostOf('k-stop', 'act');
    },
    submit: post('/api/v1/vms/k-stop/stop'),
    check: async () => assert.equal((await vm('k-stop')).state, 'stopped'),
  },
  {
    kind: 'vm.shutdown',
    at: 'the ACPI power-off asked of the host',
    setup: async () => {
      await makeVm('k-shutdown');
      holdOn = await onHostOf('k-shutdown', 'act');
    },
    submit: post('/api/v1/vms/k-shutdown/shutdown', { timeoutSeconds: 30 }),
  },
  {
    kind: 'vm.reboot',
    at: 'the reboot asked of the host',
    setup: async () => {
      await makeVm('k-reboot');
      holdOn = await onHostOf('k-reboot', 'act');
    },
    submit: post('/api/v1/vms/k-reboot/reboot'),
    // The host reboots the guest while no manager watches: a new manager did not see the new
    // boot, so it does not claim the reboot done.
    check: async (t) => {
      assert.equal(t.state, 'failed');
      assert.match(t.error!.message, /manager stopped/);
      assert.equal((await vm('k-reboot')).state, 'running');
    },
  },
  {
    kind: 'vm.delete',
    at: 'the host forgetting the VM',
    setup: async () => {
      await makeVm('k-delete', { start: false });
      holdOn = await onHostOf('k-delete', 'forget');
    },
    submit: del('/api/v1/vms/k-delete'),
    check: async (t) => {
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      assert.equal((await api.raw('GET', '/api/v1/vms/k-delete')).status, 404);
    },
  },
  {
    kind: 'vm.delete',
    at: 'the forced power-off of a running VM',
    setup: async () => {
      await makeVm('k-delete-f');
      holdOn = await onHostOf('k-delete-f', 'act');
    },
    submit: del('/api/v1/vms/k-delete-f?force=true'),
    check: async (t) => {
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      assert.equal((await api.raw('GET', '/api/v1/vms/k-delete-f')).status, 404);
    },
  },
  {
    kind: 'vm.disk.attach',
    at: 'the hot-plug into the running VM',
    setup: async () => {
      await makeVm('k-attach');
      holdOn = await onHostOf('k-attach', 'attachDisk');
    },
    submit: post('/api/v1/vms/k-attach/disks', { sizeGiB: 0.0625 }),
  },
  {
    kind: 'vm.disk.detach',
    at: 'the hot-unplug from the running VM',
    setup: async () => {
      await makeVm('k-detach', { extra: [0.0625] });
      holdOn = await onHostOf('k-detach', 'detachDisk');
    },
    submit: del('/api/v1/vms/k-detach/disks/1'),
  },
  {
    kind: 'vm.disk.move',
    at: 'the copy of the running VM’s disk',
    setup: async () => {
      await makeVm('k-move');
      holdOn = await onHostOf('k-move', 'moveDisk');
    },
    submit: post('/api/v1/vms/k-move/disks/0/move', { pool: 'local' }),
  },
  {
    kind: 'vm.snapshot.create',
    at: 'the snapshot taken by the host',
    setup: async () => {
      await makeVm('k-snap');
      holdOn = await onHostOf('k-snap', 'snapshot');
    },
    submit: post('/api/v1/vms/k-snap/snapshots', { name: 'one' }),
  },
  {
    kind: 'vm.snapshot.delete',
    at: 'the snapshot removal by the host',
    setup: async () => {
      assert.equal(
        (await api.task('POST', '/api/v1/vms/k-snap/snapshots', { name: 'two' })).state,
        'succeeded',
      );
      holdOn = await onHostOf('k-snap', 'deleteSnapshot');
    },
    submit: del('/api/v1/vms/k-snap/snapshots/two'),
  },
  {
    kind: 'vm.snapshot.revert',
    at: 'the revert of a stopped VM’s disks',
    setup: async () => {
      assert.equal(
        (await api.task('POST', '/api/v1/vms/k-snap/snapshots', { name: 'three' })).state,
        'succeeded',
      );
      assert.equal((await api.task('POST', '/api/v1/vms/k-snap/stop')).state, 'succeeded');
    },
    submit: post('/api/v1/vms/k-snap/snapshots/three/revert'),
  },
  {
    kind: 'vm.migrate',
    at: 'the memory sent to the target',
    setup: async () => {
      await makeVm('k-migrate');
      holdOn = await onHostOf('k-migrate', 'migrate');
    },
    submit: post('/api/v1/vms/k-migrate/migrate', {}),
  },
  {
    kind: 'vm.migrate',
    at: 'the target taking the VM over',
    setup: async () => {
      const v = await makeVm('k-migrate-2');
      holdOn = holding(sim.hosts.find((h) => h.name !== v.host)!, 'finishIncoming');
    },
    submit: post('/api/v1/vms/k-migrate-2/migrate', {}),
  },
  {
    kind: 'template.create',
    at: 'the copy of the disk (qemu-img convert)',
    setup: async () => {
      const v = await makeVm('k-seal', { start: false, diskGiB: 1 });
      // Enough data that the copy is still under way when the manager dies.
      const file = fileOf(hostOf(v), v.disks[0].volume);
      execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 384M', file], { stdio: 'ignore' });
      holdOn = () =>
        until(
          'the copy under way',
          30_000,
          async () =>
            filesUnder(dir).some((f) => f.endsWith('templates/k-sealed/disk.qcow2.partial')) || undefined,
        ).then(() => {});
    },
    submit: post('/api/v1/templates', { name: 'k-sealed', fromVm: 'k-seal', force: true }),
    check: async (t) => {
      // Resumed: the copy under way when the manager died is made again from the start.
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      await assertTruthful();
      const tpl = await api.request<Template>('GET', '/api/v1/templates/k-sealed');
      assert.equal(tpl.generalization, 'none');
      assert.equal(virtualSize(path.join(dir, 'shared', tpl.disk.path)), 1024 ** 3);
    },
  },
  {
    kind: 'template.create',
    at: 'the generalization asked of the guest agent',
    setup: async () => {
      await makeVm('k-general');
      holdOn = await onHostOf('k-general', 'guestExec');
    },
    submit: post('/api/v1/templates', { name: 'k-general-t', fromVm: 'k-general' }),
    check: async (t) => {
      // Resumed, it asks the guest again; the simulated guest runs no commands, so it fails
      // there, having copied nothing and left the VM running.
      assert.equal(t.state, 'failed');
      assert.match(t.error!.message, /simulated guest/);
      assert.equal((await api.raw('GET', '/api/v1/templates/k-general-t')).status, 404);
      assert.deepEqual(
        filesUnder(dir).filter((f) => f.includes('templates/k-general-t')),
        [],
      );
      assert.equal((await vm('k-general')).state, 'running');
      await assertTruthful();
    },
  },
  {
    kind: 'template.delete',
    at: 'its start',
    setup: async () => {
      await makeVm('k-seal-src', { start: false });
      const t = await api.task('POST', '/api/v1/templates', {
        name: 'k-gone',
        fromVm: 'k-seal-src',
        force: true,
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    },
    submit: del('/api/v1/templates/k-gone'),
    check: async () => {
      const left = await api.raw('GET', '/api/v1/templates/k-gone');
      const files = filesUnder(path.join(dir, 'shared', 'templates', 'k-gone'));
      assert.ok(
        left.status === 404 ? files.length === 0 : files.length > 0,
        `template ${left.status}, files ${files}`,
      );
    },
  },
  {
    kind: 'image.import',
    at: 'its start',
    setup: async () => {
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(importDir, 'k-image.qcow2'), '64M']);
    },
    submit: post('/api/v1/images', { name: 'k-image', sourcePath: path.join(importDir, 'k-image.qcow2') }),
  },
  {
    kind: 'image.delete',
    at: 'its start',
    setup: async () => {
      execFileSync('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        path.join(importDir, 'k-image2.qcow2'),
        '64M',
      ]);
      const t = await api.task('POST', '/api/v1/images', {
        name: 'k-image2',
        sourcePath: path.join(importDir, 'k-image2.qcow2'),
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    },
    submit: del('/api/v1/images/k-image2'),
  },
  {
    kind: 'image.verify',
    at: 'its start',
    setup: async () => {
      execFileSync('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        path.join(importDir, 'k-image3.qcow2'),
        '64M',
      ]);
      const t = await api.task('POST', '/api/v1/images', {
        name: 'k-image3',
        sourcePath: path.join(importDir, 'k-image3.qcow2'),
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    },
    submit: post('/api/v1/images/k-image3/verify'),
    check: async () => {
      // Read-only: the image and its recorded digest are as they were, and a new verify passes.
      const image = await api.request<{ sha256: string | null }>('GET', '/api/v1/images/k-image3');
      assert.match(image.sha256 ?? '', /^[0-9a-f]{64}$/);
      const again = await api.task('POST', '/api/v1/images/k-image3/verify');
      assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
    },
  },
  {
    kind: 'vm.cdrom',
    at: 'the eject asked of the host',
    setup: async () => {
      const src = path.join(importDir, 'k-iso-src');
      fs.mkdirSync(src, { recursive: true });
      fs.writeFileSync(path.join(src, 'readme'), 'tern\n');
      execFileSync('genisoimage', ['-quiet', '-o', path.join(importDir, 'k-iso.iso'), src]);
      const imported = await api.task('POST', '/api/v1/images', {
        name: 'k-iso',
        kind: 'iso',
        sourcePath: path.join(importDir, 'k-iso.iso'),
      });
      assert.equal(imported.state, 'succeeded', JSON.stringify(imported.error));
      const t = await api.task('POST', '/api/v1/vms', {
        name: 'k-cd',
        template: 'tiny',
        iso: 'k-iso',
        start: true,
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      holdOn = await onHostOf('k-cd', 'changeCdrom');
    },
    submit: del('/api/v1/vms/k-cd/cdrom'),
    check: async (t) => {
      // The host ejected while no manager watched; resumed, the eject is asked again and recorded.
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      const v = await vm('k-cd');
      assert.deepEqual(v.cdrom, { medium: null, image: null });
      assert.deepEqual(hostOf(v).driver.spec(v.id)?.cdrom, { medium: null });
    },
  },
  {
    kind: 'template.from-image',
    at: 'its start',
    setup: async () => {
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(importDir, 'k-disk.qcow2'), '64M']);
      const t = await api.task('POST', '/api/v1/images', {
        name: 'k-disk',
        sourcePath: path.join(importDir, 'k-disk.qcow2'),
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    },
    submit: post('/api/v1/templates', { name: 'k-from-img', fromImage: 'k-disk', firmware: 'uefi' }),
    check: async (t) => {
      // Either recorded with its disk, or failed with no copy left behind.
      const tpl = await api.raw('GET', '/api/v1/templates/k-from-img');
      const files = filesUnder(dir).filter((f) => f.includes('templates/k-from-img'));
      if (t.state === 'succeeded') {
        assert.equal(tpl.status, 200);
        assert.ok(files.some((f) => f.endsWith('disk.qcow2')));
      } else {
        assert.equal(tpl.status, 404);
        assert.deepEqual(files, []);
      }
    },
  },
  {
    kind: 'imagepool.create',
    at: 'the start of its VMs',
    setup: async () => {
      holdOn = holdOnAny('run');
    },
    submit: post('/api/v1/image-pools', { name: 'kp', template: 'tiny', size: 2, start: true }),
  },
  {
    kind: 'imagepool.version.create',
    at: 'its start',
    setup: async () => {
      const t = await api.task('POST', '/api/v1/image-pools', {
        name: 'kv',
        template: 'tiny',
        size: 1,
        start: false,
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
    },
    submit: post('/api/v1/image-pools/kv/versions'),
  },
  {
    kind: 'imagepool.version.delete',
    at: 'its start',
    setup: async () => {
      const t = await api.task('POST', '/api/v1/image-pools/kv/versions');
      if (t.state !== 'succeeded') {
        // The interrupted one above may have made version 2 already.
        const again = await api.task('POST', '/api/v1/image-pools/kv/versions');
        assert.equal(again.state, 'succeeded', JSON.stringify(again.error));
      }
    },
    submit: del('/api/v1/image-pools/kv/versions/2'),
  },
  {
    kind: 'imagepool.roll',
    at: 'the restart of a pool VM',
    setup: async () => {
      const t = await api.task('POST', '/api/v1/image-pools', {
        name: 'kr',
        template: 'tiny',
        size: 2,
        start: true,
      });
      assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
      const v = await api.task('POST', '/api/v1/image-pools/kr/versions');
      assert.equal(v.state, 'succeeded', JSON.stringify(v.error));
      const tested = await api.task('POST', '/api/v1/image-pools/kr/versions/2/test');
      assert.equal(tested.state, 'succeeded', JSON.stringify(tested.error));
      holdOn = holdOnAny('act');
    },
    submit: post('/api/v1/image-pools/kr/versions/2/promote'),
  },
  {
    kind: 'vm.nic.add',
    at: "the hot-plug asked of a running VM's host",
    setup: async () => {
      await knet();
      await makeVm('k-nic-add');
      holdOn = await onHostOf('k-nic-add', 'plugNic');
    },
    submit: post('/api/v1/vms/k-nic-add/nics', { mode: 'network', network: 'k-net' }),
    check: async () => assert.equal((await vm('k-nic-add')).nics.length, 2),
  },
  {
    kind: 'vm.nic.remove',
    at: "the hot-unplug asked of a running VM's host",
    setup: async () => {
      await knet();
      const v = await makeVm('k-nic-rm', { nics: [{ mode: 'user' }, { mode: 'network', network: 'k-net' }] });
      nicMac = v.nics[1]!.mac;
      holdOn = await onHostOf('k-nic-rm', 'unplugNic');
    },
    submit: () => del(`/api/v1/vms/k-nic-rm/nics/${nicMac}`)(),
    check: async () => assert.equal((await vm('k-nic-rm')).nics.length, 1),
  },
  {
    kind: 'vm.nic.link',
    at: "the link change asked of a running VM's host",
    setup: async () => {
      await knet();
      const v = await makeVm('k-nic-link', {
        nics: [{ mode: 'user' }, { mode: 'network', network: 'k-net' }],
      });
      nicMac = v.nics[1]!.mac;
      holdOn = await onHostOf('k-nic-link', 'linkNic');
    },
    submit: () =>
      api.request<{ task: Task }>('PUT', `/api/v1/vms/k-nic-link/nics/${nicMac}/link`, { link: 'down' }),
    check: async () => assert.equal((await vm('k-nic-link')).nics[1]!.link, 'down'),
  },
  {
    kind: 'host.maintenance',
    at: 'the evacuation of a VM',
    setup: async () => {
      await makeVm('k-evac');
      holdOn = await onHostOf('k-evac', 'migrate');
    },
    // VMs on the host's local pool cannot leave it live: they are stopped instead.
    submit: async () =>
      api.request('POST', `/api/v1/hosts/${(await vm('k-evac')).host}/maintenance`, { stopUnmovable: true }),
    check: async () => {
      for (const h of sim.hosts)
        await api.request('DELETE', `/api/v1/hosts/${h.name}/maintenance`).catch(() => {});
    },
  },
];

/** Holds the next `op` on whichever host is asked first. */
function holdOnAny(op: SimOperation) {
  for (const h of sim.hosts) h.driver.faults.hangNext(op);
  return () =>
    until(
      `${op} called`,
      30_000,
      async () => sim.hosts.some((h) => h.driver.faults.hanging > 0) || undefined,
    ).then(() => {});
}

function releaseAll(): void {
  for (const h of sim.hosts) {
    h.driver.faults.releaseHangs();
    // Hangs armed on the host that was not asked.
    h.driver.faults.clear(new Error('unused fault'));
  }
}

for (const c of table) {
  test(`${c.kind}: killed at ${c.at}, it ends and the inventory tells the truth`, async () => {
    holdOn = null;
    await c.setup?.();
    const hold = holdOn as (() => Promise<void>) | null;
    const t = await killDuring(c.submit, (task) => (hold ? hold() : running(task)), releaseAll);
    assert.ok(ended(t), `${t.kind} ${t.state}`);
    await c.check?.(t);
    await assertTruthful();
  });
}

test('vm.disk.detach: killed at the hot-unplug, a disk that cannot be plugged back in is not called undone', async () => {
  const v = await makeVm('k-replug', { extra: [0.0625] });
  const host = hostOf(v);
  const t = await killDuring(del('/api/v1/vms/k-replug/disks/1'), holding(host, 'detachDisk'), () => {
    // The host unplugs the disk while no manager is there, then refuses to plug it back in.
    releaseAll();
    host.driver.faults.failNext('attachDisk', 1, new Error('the guest refused the disk'));
  });
  assert.equal(t.state, 'failed');
  assert.match(t.error!.message, /undoing its partial work failed: could not plug disk 1 back in/);
  assert.doesNotMatch(t.error!.message, /was undone/);
  // The inventory still lists the disk the guest no longer has: the VM goes, so the tests after
  // this one find the hosts and the inventory in agreement.
  const gone = await api.task('DELETE', '/api/v1/vms/k-replug?force=true');
  assert.equal(gone.state, 'succeeded', JSON.stringify(gone.error));
  await assertTruthful();
});

/**
 * The state a kill leaves between `POST /vms` recording its VM and submitting vm.create: the
 * VM `creating`, in its placement group, with its user-data secret, and no task. Written here
 * through the manager's own stores while no manager runs, as the route writes it.
 */
async function strandCreation(name: string, group: string): Promise<string> {
  const db = await openDatabase(path.join(dir, 'tern.db'));
  const keyStore = openKeyStore({ kind: 'file', path: path.join(dir, 'keys', 'kek.json') });
  try {
    const secrets = await SecretStore.open(db, keyStore);
    const store = new VmStore(db, new EventBus());
    const { id: hostId } = await db.selectFrom('hosts').select('id').executeTakeFirstOrThrow();
    const id = randomUUID();
    const plan = planVm({ name, diskGiB: 0.0625 }, null, id, 'shared', () => '52:54:00:00:00:99');
    await store.insert(newVmRow(plan, hostId, null, randomUUID()));
    await joinGroups(db, id, [{ name: group, kind: 'affinity' }]);
    await secrets.put(userDataSecret(id), '#cloud-config\npassword: hunter2\n', {
      kind: 'user-data',
      object: `vm:${id}`,
      ownerId: null,
    });
    return id;
  } finally {
    await keyStore.close();
    await db.destroy();
  }
}

test('vm create killed before its task was recorded: the VM goes, with its name, secret and group; one whose task ran resumes', async () => {
  await api.request('POST', '/api/v1/placement-groups', { name: 'k-strand-group', kind: 'affinity' });
  // A creation under its task, held at its start (still `creating`), killed with the other.
  const hold = holdOnAny('run');
  const live = await api.request<{ task: Task; vm: Vm }>('POST', '/api/v1/vms', {
    name: 'k-live-create',
    template: 'tiny',
    start: true,
  });
  await hold();
  assert.equal((await vm('k-live-create')).state, 'creating');
  await manager.kill();
  const id = await strandCreation('k-stranded', 'k-strand-group');
  releaseAll();
  manager = startManager();
  const swept = manager.waitForLine('removed VM k-stranded');
  await manager.waitForLine('manager listening');
  await swept;
  await hostsOnline();

  await assert.rejects(vm('k-stranded'), /does not exist/);
  const { items: secrets } = await api.request<{ items: { name: string }[] }>('GET', '/api/v1/secrets');
  assert.ok(!secrets.some((s) => s.name === userDataSecret(id)), 'its user-data secret is gone');
  const check = new DatabaseSync(path.join(dir, 'tern.db'), { readOnly: true });
  try {
    const left = check.prepare('select count(*) as n from placement_group_members where vm_id = ?').get(id);
    assert.equal(left?.n, 0, 'its group membership is gone');
  } finally {
    check.close();
  }
  const audit = await api.request<{ items: { actor: string; action: string }[] }>(
    'GET',
    '/api/v1/audit?object=vms/k-stranded',
  );
  assert.ok(audit.items.some((r) => r.actor === 'tern' && r.action === 'remove stranded VM'));
  // Its name is free again.
  const again = await api.task('POST', '/api/v1/vms', { name: 'k-stranded', diskGiB: 0.0625 });
  assert.equal(again.state, 'succeeded', JSON.stringify(again.error));

  // The creation whose task was recorded was left to it: it resumed and ran.
  const t = await api.waitTask(live.task.id, ended, 60_000, 'ended');
  assert.equal(t.state, 'succeeded', JSON.stringify(t.error));
  assert.equal((await vm('k-live-create')).id, live.vm.id);
  await api.waitVm('k-live-create', (v) => v.state === 'running', 30_000, 'running');
  await assertTruthful();
});
