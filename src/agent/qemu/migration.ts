/**
 * The source side of a migration: sends a running VM's state to a target QEMU (live: pre-copy
 * over TCP while the guest runs; quick: stopped, saved to a state file on shared storage),
 * with the disks mirrored to the target's NBD exports first when storage is not shared.
 *
 * Mirror handover, as libvirt does it in spirit but without relying on QEMU inactivating
 * disks under running block jobs: `pause-before-switchover` holds the migration right after
 * the source's CPUs stopped and before the devices' state is sent. The ready mirror jobs are
 * then cancelled (which for a ready job means: write out what is in flight and stop, leaving
 * the target a consistent copy as of the stop), the NBD clients dropped, and the migration
 * continued. Nothing writes to the source disks between the stop and the end of the copy.
 *
 * On any failure, timeout or cancellation the migration is cancelled, the mirror jobs and NBD
 * clients are removed and the VM keeps (or goes back to) running here. On success QEMU stays
 * in `postmigrate` until the agent is told to release it; nothing here ever resumes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { MigrateRequest, MigrationReport } from '../../wire/agent.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { type DiskProgress, endJobs, NbdMirror, waitReady } from './disk-mirror.ts';
import { carryDirtyBitmaps } from './migration-bitmaps.ts';
import { eventTime, type MigrationInfo } from './migration-info.ts';
import {
  blockdevDel,
  blockNodeNames,
  cont,
  migrate,
  migrateCancel,
  migrateContinue,
  migrateSetCapabilities,
  migrateSetParameters,
  qmpEvents,
  queryBlockJobs,
  queryMigrate,
  status,
  stop,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';
import { gone, watchEvents } from './vm-waits.ts';

export type MigrationDone = Extract<MigrationReport, { type: 'done' }>;

export interface OutgoingContext {
  pools: Pools;
  sharedPools: readonly string[];
  log: Logger;
}

/** QEMU's max-bandwidth (bytes per second) for a limit in MiB/s; 0, "no limit", is one no link reaches. */
export function bandwidthBytes(mibPerS: number): number {
  return mibPerS > 0 ? mibPerS * 2 ** 20 : 2 ** 50;
}
const migrationActive = new Set(['setup', 'active', 'pre-switchover', 'device', 'wait-unplug', 'cancelling']);

/** Single-quoted for /bin/sh, which QEMU runs `exec:` migrations with. */
export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

/** Only a plain TCP address: any other URI (exec:, unix:) would run or open things on this host. */
function tcpUri(uri: string | undefined): string {
  if (!uri || !/^tcp:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(uri)) {
    throw new TernError(
      'invalid_request',
      `live migration needs the target's tcp:HOST:PORT address, got ${uri}`,
    );
  }
  return uri;
}

/** A drive as the target names it (the command line's node name) → this VM's node now. */
export function sourceNode(vm: VmProcess, drive: string): string {
  if (drive === 'seed' && vm.spec.seed) return 'seed';
  const m = /^disk(\d{1,2})$/.exec(drive);
  const slot = m ? Number(m[1]) : -1;
  if (!vm.spec.disks.some((d, i) => (d.slot ?? i) === slot)) {
    throw new TernError('invalid_request', `VM ${vm.spec.name} has no drive ${drive}`);
  }
  return vm.blockNodes(slot).format;
}

async function configure(
  vm: VmProcess,
  o: {
    autoConverge: boolean;
    pauseBeforeSwitchover: boolean;
    downtimeLimitMs: number;
    bandwidthMiBps: number;
  },
): Promise<void> {
  await migrateSetCapabilities(vm.monitor, {
    events: true,
    'auto-converge': o.autoConverge,
    'pause-before-switchover': o.pauseBeforeSwitchover,
  });
  await migrateSetParameters(vm.monitor, {
    downtimeLimitMs: o.downtimeLimitMs,
    maxBandwidthBytes: bandwidthBytes(o.bandwidthMiBps),
  });
  await carryDirtyBitmaps(vm);
}

/**
 * Follows a started migration to its end, reporting progress about twice a second and
 * running `atSwitchover` once when it pauses before the switchover.
 */
async function follow(
  vm: VmProcess,
  phase: 'memory' | 'state',
  check: () => TernError | null,
  progress: (r: MigrationReport) => void,
  atSwitchover: () => Promise<void>,
): Promise<MigrationInfo> {
  let reported = 0;
  let switched = false;
  const pace = watchEvents(vm, [qmpEvents.migration]);
  try {
    for (;;) {
      const info = await queryMigrate(vm.monitor);
      if (info.status === 'completed') return info;
      if (info.status === 'failed')
        throw new TernError(
          'hypervisor_error',
          `the migration failed: ${info.error ?? 'QEMU gave no reason'}`,
        );
      if (info.status === 'cancelled')
        throw new TernError('cancelled', 'the migration was cancelled in QEMU');
      if (info.status === 'pre-switchover' && !switched) {
        switched = true;
        await atSwitchover();
        await migrateContinue(vm.monitor);
        continue;
      }
      if (Date.now() - reported >= 500) {
        reported = Date.now();
        progress({
          type: 'progress',
          phase,
          transferredBytes: info.transferredBytes,
          totalBytes: info.totalBytes,
          remainingBytes: info.remainingBytes,
          speedMiBps: info.speedMiBps,
          dirtyBytesPerS: info.dirtyBytesPerS,
          expectedDowntimeMs: info.expectedDowntimeMs,
        });
      }
      const stop = check() ?? gone(vm);
      if (stop) throw stop;
      await pace.next(250);
    }
  } finally {
    pace.close();
  }
}

/**
 * Cancels a migration that was started and waits until QEMU says how it ended. Returns
 * true when it completed after all (the cancel came too late): the VM has left.
 */
async function cancelMigration(vm: VmProcess): Promise<boolean> {
  const pace = watchEvents(vm, [qmpEvents.migration]);
  try {
    await migrateCancel(vm.monitor).catch(() => {});
    const deadline = Date.now() + 30_000;
    for (;;) {
      const info = await queryMigrate(vm.monitor);
      if (info.status === 'completed') return true;
      if (!migrationActive.has(info.status)) return false;
      if (Date.now() > deadline)
        throw new TernError('timeout', 'QEMU did not cancel the migration within 30 s');
      await pace.next(250);
    }
  } finally {
    pace.close();
  }
}

/** After a migration that did not happen: the guest runs here again, whoever stopped it. */
async function resumeHere(vm: VmProcess): Promise<void> {
  const now = await status(vm.monitor);
  if (now === 'postmigrate' || now === 'finish-migrate' || now === 'paused') await cont(vm.monitor);
}

export async function migrateOut(
  vm: VmProcess,
  req: MigrateRequest,
  ctx: OutgoingContext,
  progress: (r: MigrationReport) => void,
  signal: AbortSignal,
): Promise<MigrationDone> {
  if (vm.state !== 'running')
    throw new TernError('conflict', `VM ${vm.spec.name} is ${vm.state}; only a running VM migrates`);
  const started = Date.now();
  const deadline = started + req.timeoutS * 1000;
  const check = () =>
    signal.aborted
      ? new TernError('cancelled', 'the migration was cancelled')
      : Date.now() > deadline
        ? new TernError('timeout', `the migration did not finish within ${req.timeoutS} s`)
        : null;
  let stoppedAt: number | null = null;
  const off = vm.onEvent((e) => {
    if (e.event === qmpEvents.stop) stoppedAt ??= eventTime(e);
    if (e.event === qmpEvents.resume) stoppedAt = null;
  });
  try {
    const r =
      req.mode === 'quick'
        ? await quick(vm, req, ctx, check, progress)
        : await live(vm, req, ctx, check, progress);
    const done: MigrationDone = {
      type: 'done',
      stoppedAt: stoppedAt ?? Date.now() - (r.info.downtimeMs ?? 0),
      // A quick migration's guest is down from the stop on; QEMU's figure covers only the end.
      downtimeMs: req.mode === 'quick' ? Date.now() - (stoppedAt ?? started) : (r.info.downtimeMs ?? 0),
      transferredBytes: r.info.transferredBytes + r.diskBytes,
      totalMs: Date.now() - started,
    };
    ctx.log.info({ vm: vm.id, mode: req.mode, ...done }, 'migrated VM');
    await leftSwitchover(vm);
    return done;
  } finally {
    off();
    await vm.refreshState().catch(() => {});
  }
}

async function live(
  vm: VmProcess,
  req: MigrateRequest,
  ctx: OutgoingContext,
  check: () => TernError | null,
  progress: (r: MigrationReport) => void,
): Promise<{ info: MigrationInfo; diskBytes: number }> {
  const uri = tcpUri(req.uri);
  await configure(vm, { ...req, pauseBeforeSwitchover: req.nbd !== undefined });
  let mirror: NbdMirror | null = null;
  let diskBytes = 0;
  let sent = false;
  try {
    if (req.nbd) {
      mirror = await NbdMirror.start(vm, req.nbd, (drive) => sourceNode(vm, drive));
      await waitReady(vm, mirror.jobs, check, (p: DiskProgress) => {
        diskBytes = p.totalBytes;
        progress(p);
      });
    }
    sent = true;
    await migrate(vm.monitor, uri);
    const info = await follow(vm, 'memory', check, progress, async () => {
      await mirror?.complete();
    });
    return { info, diskBytes };
  } catch (err) {
    ctx.log.warn({ vm: vm.id, err: (err as Error).message }, 'migration failed; the VM stays here');
    if (sent && (await cancelMigration(vm))) return { info: await queryMigrate(vm.monitor), diskBytes };
    await mirror?.abort();
    await resumeHere(vm);
    throw err;
  }
}

async function quick(
  vm: VmProcess,
  req: MigrateRequest,
  ctx: OutgoingContext,
  check: () => TernError | null,
  progress: (r: MigrationReport) => void,
): Promise<{ info: MigrationInfo; diskBytes: number }> {
  if (!req.stateFile) throw new TernError('invalid_request', 'a quick migration needs a stateFile');
  if (!ctx.sharedPools.includes(req.stateFile.pool)) {
    throw new TernError(
      'invalid_request',
      `the state file must be in a shared pool, not ${req.stateFile.pool}`,
    );
  }
  const file = resolveVolume(ctx.pools, req.stateFile);
  if (fs.existsSync(file)) throw new TernError('conflict', `state file ${req.stateFile.path} exists`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Written under another name and renamed when complete: a target never loads half a state.
  const partial = `${file}.partial`;
  await configure(vm, { ...req, autoConverge: false, pauseBeforeSwitchover: false });
  try {
    await stop(vm.monitor);
    // QEMU 7.2 has no file: URI; it writes the stream into this shell command's stdin. The
    // file holds guest memory: readable by this host's root only.
    await migrate(vm.monitor, `exec:umask 077 && exec cat > ${shellQuote(partial)}`);
    const info = await follow(vm, 'state', check, progress, async () => {});
    fs.renameSync(partial, file);
    return { info, diskBytes: 0 };
  } catch (err) {
    ctx.log.warn({ vm: vm.id, err: (err as Error).message }, 'saving the VM state failed; it runs on');
    await cancelMigration(vm).catch(() => false);
    fs.rmSync(partial, { force: true });
    await resumeHere(vm);
    throw err;
  }
}

/**
 * QEMU says a migration completed a moment before its run state goes from `finish-migrate`
 * to `postmigrate`, and sends no event for that step: waits for it, within a bound, so the VM
 * reads as migrated away rather than mid-switchover.
 */
async function leftSwitchover(vm: VmProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await status(vm.monitor)) !== 'finish-migrate') return;
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * After an agent restart: a migration or disk copy the previous agent was running has nobody
 * to see it through, so it is cancelled and the VM runs on here (a migration that completed
 * stays completed: the VM stays stopped in `postmigrate` for the manager to decide).
 */
export async function recoverInterrupted(vm: VmProcess, log: Logger): Promise<void> {
  if (vm.state === 'crashed' || vm.state === 'stopped' || vm.state === 'unreachable') return;
  const info = await queryMigrate(vm.monitor);
  let cancelled = false;
  if (migrationActive.has(info.status)) {
    log.warn({ vm: vm.id, status: info.status }, 'cancelling a migration left by a previous agent');
    cancelled = !(await cancelMigration(vm));
  }
  const jobs = (await queryBlockJobs(vm.monitor)).filter((j) => /^(mig|move)-/.test(j.id)).map((j) => j.id);
  if (jobs.length > 0) {
    log.warn({ vm: vm.id, jobs }, 'cancelling disk copies left by a previous agent');
    await endJobs(vm, jobs, 'force-cancel');
  }
  for (const name of await blockNodeNames(vm.monitor)) {
    if (name.startsWith('mig-nbd-')) await blockdevDel(vm.monitor, name).catch(() => {});
  }
  if (cancelled || info.status === 'cancelled' || info.status === 'failed') {
    const now = await status(vm.monitor);
    if (now === 'postmigrate' || now === 'finish-migrate') await cont(vm.monitor);
  }
}

/**
 * Ends the source's copy of a VM that migrated away. Only a copy whose state went elsewhere
 * may be ended: QEMU's word, asked afresh.
 */
export async function releaseMigratedVm(vm: VmProcess): Promise<void> {
  const now = await status(vm.monitor);
  if (now !== 'postmigrate')
    throw new TernError('conflict', `VM ${vm.spec.name} has not migrated away (it is ${now}); not ending it`);
  await vm.release();
}
