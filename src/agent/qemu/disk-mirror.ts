/**
 * Block mirror jobs of a running VM: its disks copied, while the guest writes, to the NBD
 * exports of a migration target or to a new volume on this host. A mirror job copies the whole
 * disk (`sync: full`, so a linked clone arrives with its backing chain flattened), then stays
 * "ready", repeating every new guest write on the copy, until it is ended: cancelled once ready
 * (the copy is a consistent image as of that moment; the VM stays on its disk), completed (the
 * VM switches to the copy) or cancelled early (the copy is garbage).
 */
import { TernError } from '../../errors.ts';
import type { MigrationReport, NbdTarget } from '../../wire/agent.ts';
import type { BlockJob } from './migration-info.ts';
import {
  blockdevAdd,
  blockdevDel,
  blockdevMirror,
  blockJobCancel,
  jobComplete,
  jobDismiss,
  nbdClientOptions,
  qmpEvents,
  queryBlockJobs,
} from './qmp-commands.ts';
import type { VmProcess } from './vm-process.ts';
import { gone, watchEvents } from './vm-waits.ts';

export type DiskProgress = Extract<MigrationReport, { type: 'progress' }>;

export const jobEvents = [
  qmpEvents.blockJobReady,
  qmpEvents.blockJobCompleted,
  qmpEvents.blockJobCancelled,
  qmpEvents.blockJobError,
] as const;

/** Why each of our jobs ended, from QEMU's events (a job is gone from query-block-jobs after). */
export class JobEndings {
  readonly #errors = new Map<string, string | null>();
  readonly #off: () => void;

  constructor(vm: VmProcess, ids: readonly string[]) {
    this.#off = vm.onEvent((e) => {
      const d = e.data as { device?: unknown; error?: unknown };
      if (typeof d.device !== 'string' || !ids.includes(d.device)) return;
      if (e.event === qmpEvents.blockJobCompleted || e.event === qmpEvents.blockJobCancelled) {
        const why = typeof d.error === 'string' ? d.error.slice(0, 300) : null;
        this.#errors.set(d.device, e.event === qmpEvents.blockJobCancelled ? (why ?? 'cancelled') : why);
      }
    });
  }

  error(id: string): string | null {
    return this.#errors.get(id) ?? null;
  }

  close(): void {
    this.#off();
  }
}

/**
 * Waits until every job is ready, reporting the copy's progress. `check` is asked between
 * samples and ends the wait with its error (deadline, cancellation).
 */
export async function waitReady(
  vm: VmProcess,
  ids: readonly string[],
  check: () => TernError | null,
  progress: (p: DiskProgress) => void,
): Promise<void> {
  const endings = new JobEndings(vm, ids);
  const pace = watchEvents(vm, jobEvents);
  let last = { at: Date.now(), bytes: 0 };
  let speed = 0;
  try {
    for (;;) {
      const jobs = await queryBlockJobs(vm.monitor);
      const mine: BlockJob[] = [];
      for (const id of ids) {
        const job = jobs.find((j) => j.id === id);
        if (!job || job.status === 'concluded' || job.status === 'aborting') {
          const why = endings.error(id) ?? job?.error ?? 'it ended before the copy was complete';
          throw new TernError('hypervisor_error', `copying disk ${id} failed: ${why}`);
        }
        mine.push(job);
      }
      const done = mine.reduce((n, j) => n + j.offset, 0);
      const total = mine.reduce((n, j) => n + j.length, 0);
      const now = Date.now();
      if (now - last.at >= 500) {
        speed = (Math.max(0, done - last.bytes) * 1000) / (now - last.at) / 2 ** 20;
        last = { at: now, bytes: done };
      }
      progress({
        type: 'progress',
        phase: 'disks',
        transferredBytes: done,
        totalBytes: total,
        remainingBytes: Math.max(0, total - done),
        speedMiBps: speed,
        dirtyBytesPerS: 0,
        expectedDowntimeMs: null,
      });
      if (mine.every((j) => j.ready)) return;
      const stop = check() ?? gone(vm);
      if (stop) throw stop;
      await pace.next(250);
    }
  } finally {
    pace.close();
    endings.close();
  }
}

/**
 * Ends jobs and waits until QEMU dropped them. `cancel` with `force: false` on a ready job
 * leaves a consistent copy; `complete` switches the VM to the copy. Resolves with the errors
 * of jobs that did not end cleanly (empty when all did).
 */
export async function endJobs(
  vm: VmProcess,
  ids: readonly string[],
  how: 'cancel' | 'force-cancel' | 'complete',
  timeoutMs = 120_000,
): Promise<string[]> {
  const endings = new JobEndings(vm, ids);
  const pace = watchEvents(vm, jobEvents);
  try {
    const present = new Set((await queryBlockJobs(vm.monitor)).map((j) => j.id));
    for (const id of ids.filter((i) => present.has(i))) {
      if (how === 'complete') await jobComplete(vm.monitor, id);
      else await blockJobCancel(vm.monitor, id, how === 'force-cancel');
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = (await queryBlockJobs(vm.monitor)).filter((j) => ids.includes(j.id));
      if (left.length === 0) break;
      // A job that concluded without being dismissed (not ours to keep) is dismissed here.
      for (const j of left.filter((x) => x.status === 'concluded')) {
        await jobDismiss(vm.monitor, j.id).catch(() => {});
      }
      if (Date.now() > deadline)
        throw new TernError('timeout', `block jobs ${left.map((j) => j.id).join(', ')} did not end`);
      const stop = gone(vm);
      if (stop) throw stop;
      await pace.next(250);
    }
    return ids.flatMap((id) => {
      const e = endings.error(id);
      // A cancel we asked for is how a forced cancel ends; it is not a failure of the copy.
      return e && !(how === 'force-cancel' && e === 'cancelled') ? [`${id}: ${e}`] : [];
    });
  } finally {
    pace.close();
    endings.close();
  }
}

/** A migration's copy of the source's disks to the target's NBD exports. */
export class NbdMirror {
  readonly #vm: VmProcess;
  readonly #jobs: string[] = [];
  readonly #clients: string[] = [];

  private constructor(vm: VmProcess) {
    this.#vm = vm;
  }

  get jobs(): readonly string[] {
    return this.#jobs;
  }

  /**
   * Starts one mirror job per exported drive; `nodeOf` maps a drive (named as the target's
   * node, the same name the source's command line gave it) to the source's current node.
   */
  static async start(vm: VmProcess, nbd: NbdTarget, nodeOf: (drive: string) => string): Promise<NbdMirror> {
    const m = new NbdMirror(vm);
    try {
      for (const drive of nbd.drives) {
        const source = nodeOf(drive);
        const client = `mig-nbd-${drive}`;
        await blockdevAdd(vm.monitor, nbdClientOptions(client, nbd.host, nbd.port, drive));
        m.#clients.push(client);
        const job = `mig-${drive}`;
        await blockdevMirror(vm.monitor, job, source, client);
        m.#jobs.push(job);
      }
    } catch (err) {
      await m.abort();
      throw err;
    }
    return m;
  }

  /**
   * With the source's CPUs stopped: ends every ready job gracefully, so each export holds the
   * disk exactly as the guest left it, then disconnects from the target.
   */
  async complete(): Promise<void> {
    const errors = await endJobs(this.#vm, this.#jobs, 'cancel');
    if (errors.length > 0)
      throw new TernError('hypervisor_error', `finishing the disk copy failed: ${errors.join('; ')}`);
    await this.#dropClients();
  }

  /** Stops copying and disconnects; the VM keeps its disks as they are. */
  async abort(): Promise<void> {
    await endJobs(this.#vm, this.#jobs, 'force-cancel').catch(() => []);
    await this.#dropClients();
  }

  async #dropClients(): Promise<void> {
    for (const node of this.#clients.splice(0)) {
      await blockdevDel(this.#vm.monitor, node).catch(() => {});
    }
  }
}
