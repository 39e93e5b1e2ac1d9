/**
 * Migration between two real agents, driven through the manager's agent client the way the
 * migrate task drives it: live with shared storage, a migration that cannot converge in
 * time, quick migration through a state file, live with the disks mirrored to the target's
 * own pool, and a disk moved to another pool while the guest runs. The guest proves it never
 * rebooted (a file in its tmpfs survives every move) and that its disk came along (a file on
 * its disk reads back from the target's copy with the page cache dropped).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TernError } from '../src/errors.ts';
import type { AgentClient } from '../src/manager/hosts/agent-client.ts';
import type { AgentVm, MigrateRequest, MigrationReport } from '../src/wire/agent.ts';
import type { Template } from '../src/wire/template.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { type Cluster, guestDir, shellOn, startCluster, type TestHost } from './harness.ts';

let c: Cluster;
let A: AgentClient;
let B: AgentClient;
let hostA: TestHost;
let hostB: TestHost;
let spec: VmSpec;
const id = randomUUID();
const mark = `mark-${id.slice(0, 8)}`;
const limits = { downtimeLimitMs: 300, bandwidthMiBps: 0, autoConverge: true, timeoutS: 300 };

before(async () => {
  c = await startCluster('migration', { hosts: ['a', 'b'], shared: true });
  [hostA, hostB] = c.hosts;
  A = await c.agentClient('a');
  B = await c.agentClient('b');
  const t = await c.api.request<Template>('GET', '/api/v1/templates/tiny');
  const dir = `vms/${id}`;
  // A linked clone on shared storage, as the manager makes one.
  await A.createVolume({
    volume: { pool: 'shared', path: `${dir}/disk0.qcow2` },
    format: 'qcow2',
    backing: t.disk,
  });
  await A.createSeed({
    volume: { pool: 'shared', path: `${dir}/seed.iso` },
    metaData: `instance-id: ${id}\nlocal-hostname: mover\n`,
  });
  // Host b's own pool gets the boot files, for the migration without shared storage.
  const g = guestDir();
  for (const f of ['vmlinuz', 'initrd.img'])
    await B.importVolume({
      volume: { pool: 'local', path: `boot/${f}` },
      sourcePath: path.join(g, f),
      format: 'raw',
    });
  spec = {
    id,
    name: 'mover',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 256,
    disks: [
      { volume: { pool: 'shared', path: `${dir}/disk0.qcow2` }, format: 'qcow2', readonly: false, slot: 0 },
    ],
    nics: [{ mac: '52:54:00:6d:69:67', network: { mode: 'user' } }],
    boot: t.boot!,
    seed: { pool: 'shared', path: `${dir}/seed.iso` },
  };
});

after(async () => {
  for (const client of [A, B]) await client?.act(id, 'kill').catch(() => {});
  await c?.stop();
});

/** Waits on the agent's event stream until the VM satisfies `until`. */
async function waitVm(
  client: AgentClient,
  until: (vm: AgentVm) => boolean,
  timeoutMs: number,
  what: string,
): Promise<AgentVm> {
  const stop = new AbortController();
  try {
    return await new Promise<AgentVm>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`VM not ${what} within ${timeoutMs} ms`)), timeoutMs);
      stop.signal.addEventListener('abort', () => clearTimeout(timer));
      client
        .follow(
          (e) => {
            if (e.type === 'vm' && e.vm.id === id && until(e.vm)) resolve(e.vm);
          },
          () => {},
          stop.signal,
        )
        .catch(reject);
    });
  } finally {
    stop.abort();
  }
}

const answering = (vm: AgentVm) => vm.state === 'running' && vm.guest.agent === 'responding';

const guestShell = (host: TestHost, command: string, expect: RegExp) => shellOn(host, id, command, expect);

const MARK = mark.toUpperCase();
/** The file in the guest's tmpfs: only there if the guest kept running (no reboot). */
const memoryIntact = (h: TestHost) => guestShell(h, 'cat /tmp/mark | tr a-z A-Z', new RegExp(MARK));
/** The file on the guest's disk, read from the disk itself rather than the page cache. */
const diskIntact = (h: TestHost) =>
  guestShell(h, 'sync; echo 3 > /proc/sys/vm/drop_caches; cat /mark | tr a-z A-Z', new RegExp(MARK));

function qemuImg(args: string[]): string {
  return execFileSync('qemu-img', args, { encoding: 'utf8' });
}

async function send(
  from: AgentClient,
  req: MigrateRequest,
  reports: MigrationReport[] = [],
): Promise<Extract<MigrationReport, { type: 'done' }>> {
  return from.migrate(id, req, (r) => reports.push(r), AbortSignal.timeout(600_000));
}

test('live migration with shared storage moves the running guest to the other host', async () => {
  await A.runVm(spec);
  await waitVm(A, answering, 120_000, 'up on a');
  await guestShell(
    hostA,
    `echo ${mark} > /tmp/mark && echo ${mark} > /mark && sync && echo WR''OTE`,
    /WROTE/,
  );

  const incoming = await B.prepareIncoming({
    spec,
    mode: 'live',
    storage: 'shared',
    listenHost: '127.0.0.1',
  });
  assert.match(incoming.uri, /^tcp:127\.0\.0\.1:\d+$/);
  assert.equal(incoming.nbd, null);
  const waiting = await B.getVm(id);
  assert.equal(waiting?.state, 'paused');
  assert.equal(waiting?.reason, 'incoming migration');
  // The guest may not run on the target before it is finished, not even when asked.
  await assert.rejects(B.act(id, 'resume'), (e: TernError) => e.code === 'conflict');

  const reports: MigrationReport[] = [];
  const t0 = Date.now();
  const done = await send(A, { mode: 'live', uri: incoming.uri, ...limits }, reports);
  assert.ok(reports.some((r) => r.type === 'progress' && r.phase === 'memory'));
  assert.ok(done.stoppedAt >= t0 && done.stoppedAt <= Date.now());
  assert.ok(done.downtimeMs >= 0 && done.transferredBytes > 0);
  const source = await A.getVm(id);
  assert.equal(source?.state, 'paused', 'the source copy stays stopped');
  assert.equal(source?.reason, 'migrated to another host');

  const finished = await B.finishIncoming(id);
  assert.equal(finished.vm.state, 'running');
  assert.ok(finished.resumedAt >= done.stoppedAt);
  await A.releaseMigrated(id);
  assert.equal(await A.getVm(id), null);
  assert.ok(!(await A.listVms()).some((v) => v.id === id));
  await waitVm(B, answering, 60_000, 'answering on b');
  await memoryIntact(hostB);

  // A restarted source agent has no trace of the VM that left: not running, not stopped.
  await hostA.agent.kill();
  await hostA.start();
  assert.ok(!(await A.listVms()).some((v) => v.id === id));
});

test('a migration that cannot finish in time is cancelled and the VM runs on at the source', async () => {
  const incoming = await A.prepareIncoming({
    spec,
    mode: 'live',
    storage: 'shared',
    listenHost: '127.0.0.1',
  });
  await assert.rejects(
    send(B, {
      mode: 'live',
      uri: incoming.uri,
      downtimeLimitMs: 1,
      bandwidthMiBps: 1,
      autoConverge: false,
      timeoutS: 2,
    }),
    (e: TernError) => e.code === 'timeout' && /within 2 s/.test(e.message),
  );
  await A.abortIncoming(id);
  await A.abortIncoming(id);
  assert.equal(await A.getVm(id), null);
  assert.equal((await B.getVm(id))?.state, 'running');
  await memoryIntact(hostB);
});

test('quick migration suspends the guest to a state file and resumes it on the other host', async () => {
  const stateFile = { pool: 'shared', path: `vms/${id}/state` };
  const done = await send(B, { mode: 'quick', stateFile, ...limits });
  assert.equal((await B.getVm(id))?.state, 'paused');
  assert.ok(fs.existsSync(path.join(c.sharedPool!, stateFile.path)));
  await A.prepareIncoming({ spec, mode: 'quick', storage: 'shared', listenHost: '127.0.0.1', stateFile });
  const finished = await A.finishIncoming(id);
  assert.equal(finished.vm.state, 'running');
  assert.ok(finished.resumedAt >= done.stoppedAt);
  await B.releaseMigrated(id);
  assert.equal(await B.getVm(id), null);
  assert.ok(!fs.existsSync(path.join(c.sharedPool!, stateFile.path)), 'the state file is removed');
  await waitVm(A, answering, 60_000, 'answering on a');
  await memoryIntact(hostA);
});

test('live migration without shared storage mirrors the disks into the target pool', async () => {
  const dir = `vms/${id}`;
  const onB: VmSpec = {
    ...spec,
    disks: [{ ...spec.disks[0], volume: { pool: 'local', path: `${dir}/disk0.qcow2` } }],
    seed: { pool: 'local', path: `${dir}/seed.iso` },
    boot: {
      ...spec.boot!,
      kernel: { pool: 'local', path: 'boot/vmlinuz' },
      initrd: { pool: 'local', path: 'boot/initrd.img' },
    },
  };
  const disk = (await A.volumeInfo(spec.disks[0].volume))!;
  const seed = (await A.volumeInfo(spec.seed!))!;
  const incoming = await B.prepareIncoming({
    spec: onB,
    mode: 'live',
    storage: 'mirror',
    listenHost: '127.0.0.1',
    create: [
      { volume: onB.disks[0].volume, format: 'qcow2', sizeBytes: disk.virtualBytes },
      { volume: onB.seed!, format: 'raw', sizeBytes: seed.virtualBytes },
    ],
  });
  assert.deepEqual(incoming.nbd?.drives, ['disk0', 'seed']);
  const reports: MigrationReport[] = [];
  await send(A, { mode: 'live', uri: incoming.uri, nbd: incoming.nbd!, ...limits }, reports);
  const phases = reports.flatMap((r) => (r.type === 'progress' ? [r.phase] : []));
  assert.ok(phases.indexOf('disks') < phases.indexOf('memory'), 'the disks are copied before the memory');
  await B.finishIncoming(id);
  await A.releaseMigrated(id);
  await waitVm(B, answering, 60_000, 'answering on b');
  await memoryIntact(hostB);
  await diskIntact(hostB);

  const file = path.join(hostB.pool, onB.disks[0].volume.path);
  qemuImg(['check', '-U', file]);
  // The linked clone arrived flattened: it no longer needs the template.
  assert.equal(JSON.parse(qemuImg(['info', '-U', '--output=json', file]))['backing-filename'], undefined);
  // The seed is a byte-exact copy, so the next boot keeps the VM's identity.
  const seedA = fs.readFileSync(path.join(c.sharedPool!, spec.seed!.path));
  assert.ok(fs.readFileSync(path.join(hostB.pool, onB.seed!.path)).equals(seedA));
  spec = onB;
});

test('a disk moves to another pool while the guest runs', async () => {
  const from = path.join(hostB.pool, spec.disks[0].volume.path);
  const target = { pool: 'shared', path: `vms/${id}/moved.qcow2` };
  const reports: MigrationReport[] = [];
  const done = await B.moveDisk(
    id,
    { index: 0, target },
    (r) => reports.push(r),
    AbortSignal.timeout(300_000),
  );
  assert.equal(done.type, 'done');
  assert.ok(reports.some((r) => r.type === 'progress' && r.phase === 'disks'));
  const vm = await B.getVm(id);
  assert.equal(vm?.state, 'running');
  // QEMU holds the new volume open and has let go of the old one.
  const open = fs.readdirSync(`/proc/${vm!.pid}/fd`).flatMap((fd) => {
    try {
      return [fs.readlinkSync(`/proc/${vm!.pid}/fd/${fd}`)];
    } catch {
      return [];
    }
  });
  const to = path.join(c.sharedPool!, target.path);
  assert.ok(open.includes(to));
  assert.ok(!open.includes(from));
  await guestShell(hostB, `echo ${mark}-2 > /mark && sync && echo WR''OTE`, /WROTE/);
  await guestShell(
    hostB,
    'echo 3 > /proc/sys/vm/drop_caches; cat /mark | tr a-z A-Z',
    new RegExp(`${MARK}-2`),
  );
  qemuImg(['check', '-U', to]);
  await memoryIntact(hostB);
});
