/**
 * bench/migration-raw: the floor for live migration of the tiny guest. Two QEMU processes
 * started by hand from the command line Tern's driver builds (the target with
 * `-incoming tcp:127.0.0.1:PORT`, on the same disk: shared storage), the source's guest agent
 * answering, then one `migrate` over raw QMP with the downtime limit, bandwidth and
 * auto-converge the manager uses. Measures the wall time from `migrate` to the target
 * running (its RESUME event) and the downtime, both as QEMU reports it and as the time from
 * the source's STOP event to the target's RESUME event.
 *
 *   node bench/migration-raw.ts [--runs 3]
 *
 * bench/migration.ts runs `rawMigration` next to `tern vm migrate` in the same run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { detectAccelerator } from '../src/agent/qemu/accelerator.ts';
import { buildCommandLine, type RuntimePaths } from '../src/agent/qemu/command-line.ts';
import { bandwidthBytes } from '../src/agent/qemu/migration.ts';
import { eventTime, readMigrationInfo } from '../src/agent/qemu/migration-info.ts';
import { QgaClient } from '../src/agent/qemu/qga.ts';
import { QmpClient } from '../src/agent/qemu/qmp.ts';
import { createSeed } from '../src/agent/storage/volumes.ts';
import { defaultSettings } from '../src/manager/cluster/settings.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { freePorts, guestDir, tempDir } from '../test/harness.ts';

export interface RawMigrationOptions {
  downtimeLimitMs?: number;
  bandwidthMiBps?: number;
  autoConverge?: boolean;
}

export interface RawMigrationResult {
  /** From `migrate` on the source to the target's RESUME event. */
  wallMs: number;
  /** QEMU's own downtime figure (query-migrate on the source). */
  qemuDowntimeMs: number;
  /** Source STOP event to target RESUME event (QEMU's event timestamps, one clock). */
  eventDowntimeMs: number;
  transferredBytes: number;
}

function runtimePaths(dir: string): RuntimePaths {
  fs.mkdirSync(dir, { recursive: true });
  return {
    qmp: `${dir}/qmp.sock`,
    qga: `${dir}/qga.sock`,
    serial: `${dir}/serial.sock`,
    consoleLog: `${dir}/console.log`,
    pidfile: `${dir}/qemu.pid`,
  };
}

async function monitor(child: ChildProcess, socket: string): Promise<QmpClient> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`QEMU exited (${child.exitCode}) before its monitor opened`);
    if (fs.existsSync(socket)) {
      try {
        return await QmpClient.connect(socket, 3000);
      } catch (err) {
        if (Date.now() > deadline) throw err;
      }
    }
    if (Date.now() > deadline) throw new Error('QEMU did not open its monitor within 30 s');
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** One live migration of a freshly booted tiny guest between two hand-started QEMUs. */
export async function rawMigration(opts: RawMigrationOptions = {}): Promise<RawMigrationResult> {
  const downtimeLimitMs = opts.downtimeLimitMs ?? defaultSettings.migrationDowntimeMs;
  const bandwidthMiBps = opts.bandwidthMiBps ?? defaultSettings.migrationBandwidthMiBps;
  const autoConverge = opts.autoConverge ?? true;
  const g = guestDir();
  const m = JSON.parse(fs.readFileSync(path.join(g, 'manifest.json'), 'utf8')) as {
    kernel: string;
    initrd: string;
    disk: string;
    cmdline: string;
  };
  const dir = tempDir('tern-rawmig');
  const id = randomUUID();
  const disk = path.join(dir, 'disk0.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', path.join(g, m.disk), '-F', 'qcow2', disk]);
  await createSeed({ p: dir }, { volume: { pool: 'p', path: 'seed.iso' }, metaData: `instance-id: ${id}\n` });
  const spec: VmSpec = {
    id,
    name: 'rawmig',
    machine: 'q35',
    cpuModel: 'host',
    vcpus: 1,
    memoryMiB: 256,
    disks: [{ volume: { pool: 'p', path: 'disk0.qcow2' }, format: 'qcow2', readonly: false, slot: 0 }],
    nics: [{ mac: '52:54:00:72:61:77', network: { mode: 'user' } }],
    boot: { kernel: { pool: 'p', path: 'k' }, initrd: { pool: 'p', path: 'i' }, cmdline: m.cmdline },
    seed: { pool: 'p', path: 'seed.iso' },
  };
  const volumes = {
    disks: [disk],
    seed: path.join(dir, 'seed.iso'),
    kernel: path.join(g, m.kernel),
    initrd: path.join(g, m.initrd),
  };
  const accel = detectAccelerator();
  const [port] = await freePorts(1);
  const src = runtimePaths(path.join(dir, 'src'));
  const dst = runtimePaths(path.join(dir, 'dst'));
  const children: ChildProcess[] = [];
  const qmps: QmpClient[] = [];
  try {
    const start = (args: string[]) => {
      const child = spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
      children.push(child);
      return child;
    };
    const source = start(buildCommandLine(spec, volumes, src, accel));
    const target = start([
      ...buildCommandLine(spec, volumes, dst, accel),
      '-incoming',
      `tcp:127.0.0.1:${port}`,
    ]);
    const sq = await monitor(source, src.qmp);
    const tq = await monitor(target, dst.qmp);
    qmps.push(sq, tq);
    const qga = new QgaClient(src.qga);
    for (let i = 0; ; i++) {
      try {
        await qga.execute('guest-ping', undefined, { timeoutMs: 500 });
        break;
      } catch (err) {
        if (i > 600) throw err;
      }
    }
    qga.close();
    await sq.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'auto-converge', state: autoConverge },
      ],
    });
    await sq.execute('migrate-set-parameters', {
      'downtime-limit': downtimeLimitMs,
      'max-bandwidth': bandwidthBytes(bandwidthMiBps),
    });
    const stopped = sq.waitForEvent('STOP', 600_000);
    const resumed = tq.waitForEvent('RESUME', 600_000);
    const t0 = performance.now();
    await sq.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const resume = await resumed;
    const wallMs = performance.now() - t0;
    const stop = await stopped;
    const completed = sq.waitForEvent('MIGRATION', 60_000, (e) => e.data.status === 'completed');
    let info = readMigrationInfo(await sq.execute('query-migrate'));
    if (info.status !== 'completed') {
      await completed;
      info = readMigrationInfo(await sq.execute('query-migrate'));
    }
    completed.catch(() => {});
    return {
      wallMs,
      qemuDowntimeMs: info.downtimeMs ?? Number.NaN,
      eventDowntimeMs: eventTime(resume) - eventTime(stop),
      transferredBytes: info.transferredBytes,
    };
  } finally {
    for (const q of qmps) q.close();
    for (const child of children) child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
  const runs = Number(values.runs);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `# raw QMP live migration, tiny guest, ${detectAccelerator().accelerator}, downtime limit ${defaultSettings.migrationDowntimeMs} ms, bandwidth ${defaultSettings.migrationBandwidthMiBps || 'unlimited'} MiB/s`,
  );
  const rows: RawMigrationResult[] = [];
  for (let i = 0; i < runs; i++) rows.push(await rawMigration());
  const head = ['run', 'wall ms', 'qemu downtime ms', 'stop→resume ms', 'MiB sent'];
  const body = rows.map((r, i) => [
    String(i + 1),
    r.wallMs.toFixed(0),
    r.qemuDowntimeMs.toFixed(0),
    r.eventDowntimeMs.toFixed(0),
    (r.transferredBytes / 2 ** 20).toFixed(1),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  for (const r of [head, ...body]) console.log(r.map((c, i) => c.padStart(w[i])).join('  '));
  console.log(
    `raw migration wall time (median of ${runs}): ${median(rows.map((r) => r.wallMs)).toFixed(0)} ms`,
  );
}
