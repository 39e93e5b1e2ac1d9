/**
 * bench/migration-raw: the floor for live migration of the tiny guest. The guest booted by hand
 * from the command line Tern's driver builds, its guest agent answering; then each migration
 * starts a target QEMU by hand (the same command line plus `-incoming tcp:127.0.0.1:PORT`, on
 * the same disk: shared storage) and sends `migrate` over raw QMP with the downtime limit,
 * bandwidth and auto-converge the manager uses. Wall time runs from spawning the target QEMU to
 * the target running (its RESUME event), as Tern's migration also starts its target; the
 * downtime is reported both as QEMU does and as the time from the source's STOP event to the
 * target's RESUME event. Migrations go back and forth, each into a fresh target.
 *
 *   node bench/migration-raw.ts [--runs 3]
 *
 * bench/migration.ts runs `RawGuest` next to `tern vm migrate` in the same run.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { detectAccelerator } from '../src/agent/qemu/accelerator.ts';
import { buildCommandLine, type ResolvedVolumes, type RuntimePaths } from '../src/agent/qemu/command-line.ts';
import { bandwidthBytes } from '../src/agent/qemu/migration.ts';
import { eventTime, readMigrationInfo } from '../src/agent/qemu/migration-info.ts';
import { QgaClient } from '../src/agent/qemu/qga.ts';
import { QmpClient } from '../src/agent/qemu/qmp.ts';
import { createSeed } from '../src/agent/storage/volumes.ts';
import { defaultSettings } from '../src/manager/cluster/settings.ts';
import type { VmSpec } from '../src/wire/vm.ts';
import { freePorts, guestDir, tempDir } from '../test/harness.ts';
import { median } from './report.ts';

export interface RawMigrationOptions {
  downtimeLimitMs?: number;
  bandwidthMiBps?: number;
  autoConverge?: boolean;
  /** The QEMU CPU model; Tern's VM runs the cluster baseline, so pass that to match it. */
  cpuModel?: string;
  memoryMiB?: number;
}

export interface RawMigrationResult {
  /** From spawning the target QEMU to the target's RESUME event: what Tern's task also covers. */
  wallMs: number;
  /** From spawning the target QEMU until its monitor answered (it listens for the state by then). */
  targetStartMs: number;
  /** From `migrate` on the source to the target's RESUME event. */
  migrateMs: number;
  /** QEMU's own downtime figure (query-migrate on the source). */
  qemuDowntimeMs: number;
  /** Source STOP event to target RESUME event (QEMU's event timestamps, one clock). */
  eventDowntimeMs: number;
  transferredBytes: number;
  /** Ending the source afterwards (`quit`, until the process is gone); outside `wallMs`. */
  quitSourceMs: number;
}

function runtimePaths(dir: string): RuntimePaths {
  fs.rmSync(dir, { recursive: true, force: true });
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

interface Side {
  child: ChildProcess;
  qmp: QmpClient;
  paths: RuntimePaths;
}

/**
 * The tiny guest on its own overlay (the one disk both QEMUs open: shared storage), booted
 * once by hand; each `migrate` starts a fresh target QEMU and moves the guest into it, so
 * repeated migrations go back and forth between two runtime directories as Tern's do
 * between two hosts.
 */
export class RawGuest {
  readonly #dir: string;
  readonly #spec: VmSpec;
  readonly #volumes: ResolvedVolumes;
  readonly #downtimeLimitMs: number;
  readonly #bandwidthMiBps: number;
  readonly #autoConverge: boolean;
  #current: Side | null = null;
  #count = 0;

  private constructor(dir: string, spec: VmSpec, volumes: ResolvedVolumes, opts: RawMigrationOptions) {
    this.#dir = dir;
    this.#spec = spec;
    this.#volumes = volumes;
    this.#downtimeLimitMs = opts.downtimeLimitMs ?? defaultSettings.migrationDowntimeMs;
    this.#bandwidthMiBps = opts.bandwidthMiBps ?? defaultSettings.migrationBandwidthMiBps;
    this.#autoConverge = opts.autoConverge ?? true;
  }

  /** Boots the guest and waits until its guest agent answers. */
  static async boot(opts: RawMigrationOptions = {}): Promise<RawGuest> {
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
    execFileSync('qemu-img', [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-b',
      path.join(g, m.disk),
      '-F',
      'qcow2',
      disk,
    ]);
    await createSeed(
      { p: dir },
      { volume: { pool: 'p', path: 'seed.iso' }, metaData: `instance-id: ${id}\n` },
    );
    const spec: VmSpec = {
      id,
      name: 'rawmig',
      machine: 'q35',
      cpuModel: opts.cpuModel ?? 'host',
      vcpus: 1,
      memoryMiB: opts.memoryMiB ?? 256,
      disks: [{ volume: { pool: 'p', path: 'disk0.qcow2' }, format: 'qcow2', readonly: false, slot: 0 }],
      nics: [{ mac: '52:54:00:72:61:77', network: { mode: 'user' } }],
      boot: { kernel: { pool: 'p', path: 'k' }, initrd: { pool: 'p', path: 'i' }, cmdline: m.cmdline },
      seed: { pool: 'p', path: 'seed.iso' },
    };
    const volumes: ResolvedVolumes = {
      disks: [disk],
      seed: path.join(dir, 'seed.iso'),
      kernel: path.join(g, m.kernel),
      initrd: path.join(g, m.initrd),
    };
    const guest = new RawGuest(dir, spec, volumes, opts);
    try {
      const paths = runtimePaths(path.join(dir, 'side0'));
      const child = guest.#spawn(buildCommandLine(spec, volumes, paths, detectAccelerator()));
      guest.#current = { child, qmp: await monitor(child, paths.qmp), paths };
      const qga = new QgaClient(paths.qga);
      for (let i = 0; ; i++) {
        try {
          await qga.execute('guest-ping', undefined, { timeoutMs: 500 });
          break;
        } catch (err) {
          if (i > 600) throw err;
        }
      }
      qga.close();
    } catch (err) {
      guest.close();
      throw err;
    }
    return guest;
  }

  #spawn(args: string[]): ChildProcess {
    return spawn('qemu-system-x86_64', args, { stdio: 'ignore' });
  }

  /** One live migration into a freshly started target QEMU; the old source is ended afterwards. */
  async migrate(): Promise<RawMigrationResult> {
    const source = this.#current;
    if (!source) throw new Error('the raw guest is not running');
    this.#count++;
    const [port] = await freePorts(1);
    const paths = runtimePaths(path.join(this.#dir, `side${this.#count % 2}`));
    const args = [
      ...buildCommandLine(this.#spec, this.#volumes, paths, detectAccelerator()),
      '-incoming',
      `tcp:127.0.0.1:${port}`,
    ];
    const sq = source.qmp;
    const stopped = sq.waitForEvent('STOP', 600_000);
    const t0 = performance.now();
    const child = this.#spawn(args);
    let tq: QmpClient;
    try {
      // The monitor answers only once QEMU's main loop runs, after it bound the incoming port.
      tq = await monitor(child, paths.qmp);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    const target: Side = { child, qmp: tq, paths };
    const targetStartMs = performance.now() - t0;
    const resumed = tq.waitForEvent('RESUME', 600_000);
    // The source is the previous target: its migration settings are QEMU's defaults until set.
    await sq.execute('migrate-set-capabilities', {
      capabilities: [
        { capability: 'events', state: true },
        { capability: 'auto-converge', state: this.#autoConverge },
      ],
    });
    await sq.execute('migrate-set-parameters', {
      'downtime-limit': this.#downtimeLimitMs,
      'max-bandwidth': bandwidthBytes(this.#bandwidthMiBps),
    });
    const t1 = performance.now();
    await sq.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const resume = await resumed;
    const t2 = performance.now();
    this.#current = target;
    const stop = await stopped;
    const completed = sq.waitForEvent('MIGRATION', 60_000, (e) => e.data.status === 'completed');
    completed.catch(() => {});
    let info = readMigrationInfo(await sq.execute('query-migrate'));
    if (info.status !== 'completed') {
      await completed;
      info = readMigrationInfo(await sq.execute('query-migrate'));
    }
    const t3 = performance.now();
    const gone = new Promise((r) => source.child.once('exit', r));
    await sq.execute('quit').catch(() => {});
    await gone;
    source.qmp.close();
    return {
      wallMs: t2 - t0,
      targetStartMs,
      migrateMs: t2 - t1,
      qemuDowntimeMs: info.downtimeMs ?? Number.NaN,
      eventDowntimeMs: eventTime(resume) - eventTime(stop),
      transferredBytes: info.transferredBytes,
      quitSourceMs: performance.now() - t3,
    };
  }

  close(): void {
    if (this.#current) {
      this.#current.qmp.close();
      this.#current.child.kill('SIGKILL');
      this.#current = null;
    }
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** One live migration of a freshly booted tiny guest between two hand-started QEMUs. */
export async function rawMigration(opts: RawMigrationOptions = {}): Promise<RawMigrationResult> {
  const guest = await RawGuest.boot(opts);
  try {
    return await guest.migrate();
  } finally {
    guest.close();
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
  const runs = Number(values.runs);
  console.log(
    `# raw QMP live migration, tiny guest, ${detectAccelerator().accelerator}, downtime limit ${defaultSettings.migrationDowntimeMs} ms, bandwidth ${defaultSettings.migrationBandwidthMiBps || 'unlimited'} MiB/s`,
  );
  const rows: RawMigrationResult[] = [];
  const guest = await RawGuest.boot();
  try {
    for (let i = 0; i < runs; i++) rows.push(await guest.migrate());
  } finally {
    guest.close();
  }
  const head = [
    'run',
    'wall ms',
    'target start ms',
    'migrate ms',
    'qemu downtime ms',
    'stop→resume ms',
    'MiB sent',
  ];
  const body = rows.map((r, i) => [
    String(i + 1),
    r.wallMs.toFixed(0),
    r.targetStartMs.toFixed(0),
    r.migrateMs.toFixed(0),
    r.qemuDowntimeMs.toFixed(0),
    r.eventDowntimeMs.toFixed(0),
    (r.transferredBytes / 2 ** 20).toFixed(1),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  for (const r of [head, ...body]) console.log(r.map((c, i) => c.padStart(w[i])).join('  '));
  console.log(
    `raw migration wall time, target spawn to target running (median of ${runs}): ${median(rows.map((r) => r.wallMs)).toFixed(0)} ms`,
  );
}
