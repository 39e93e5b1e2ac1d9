/**
 * Live and quick migration between simulated hosts: the process-wide registry through which a
 * source finds the target that expects its VM, and the run that paces a migration on the
 * simulated clock (by the pre-copy model, precopy.ts) and reports progress as the QEMU driver does.
 */
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { AgentVmState, MigrateRequest, MigrationReport } from '../../wire/agent.ts';
import type { GuestInfo, VmSpec } from '../../wire/vm.ts';
import type { SimClock } from './clock.ts';
import { type PrecopyParams, type PrecopyState, precopyRound, startPrecopy } from './precopy.ts';

const MiB = 1024 * 1024;

// --- the registry of incoming migrations -----------------------------------------------------

/** What travels from the source to the target: the guest as it was when its CPUs stopped. */
export interface Carried {
  guest: GuestInfo;
  booted: boolean;
  boots: number;
  dirtyMiBps: number;
  console: string;
}

/** A target host waiting for a VM, as the source sees it. */
export interface IncomingEntry {
  vmId: string;
  uri: string;
  /** `host:port` of its NBD exports (mirrored storage). */
  nbd: string | null;
  networkMiBps: number;
  reachable(): boolean;
  /** The target's volume files by drive name, for the mirror to fill. */
  driveFiles(): Map<string, string>;
  carried: Carried | null;
}

const byUri = new Map<string, IncomingEntry>();
const byNbd = new Map<string, IncomingEntry>();

export const incoming = {
  add(entry: IncomingEntry): void {
    if (byUri.has(entry.uri))
      throw new TernError('conflict', `a migration to ${entry.uri} is already expected`);
    byUri.set(entry.uri, entry);
    if (entry.nbd) byNbd.set(entry.nbd, entry);
  },
  remove(entry: IncomingEntry): void {
    if (byUri.get(entry.uri) === entry) byUri.delete(entry.uri);
    if (entry.nbd && byNbd.get(entry.nbd) === entry) byNbd.delete(entry.nbd);
  },
  byUri(uri: string): IncomingEntry | undefined {
    return byUri.get(uri);
  },
  byNbd(hostPort: string): IncomingEntry | undefined {
    return byNbd.get(hostPort);
  },
  has(entry: IncomingEntry): boolean {
    return byUri.get(entry.uri) === entry;
  },
};

let nextNbdPort = 49152;
/** A port number for simulated NBD exports; nothing listens on it. */
export function simNbdPort(): number {
  const port = nextNbdPort;
  nextNbdPort = nextNbdPort >= 65000 ? 49152 : nextNbdPort + 1;
  return port;
}

export function writeStateFile(file: string, carried: Carried): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(`${file}.partial`, JSON.stringify({ sim: 1, ...carried }));
  fs.renameSync(`${file}.partial`, file);
}

export function readStateFile(file: string): Carried | null {
  try {
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Carried & { sim?: number };
    if (raw.sim !== 1 || typeof raw.guest !== 'object' || raw.guest === null) return null;
    return raw;
  } catch {
    return null;
  }
}

export function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

// --- a migration under way on the source -----------------------------------------------------

/** What a run needs from the source driver, without reaching into it. */
export interface SourceSide {
  hostname: string;
  clock: SimClock;
  spec(): VmSpec;
  state(): AgentVmState;
  dirtyMiBps(): number;
  /** Still here and alive: a crash or a power loss ends the migration. */
  alive(): boolean;
  carry(): Carried;
  /** Stops the guest's CPUs; returns how to undo it if the migration then fails. */
  pause(reason: string): () => void;
  /** The state is on the target: the copy here is stopped for good. */
  migrated(): void;
  /** The source's writable drives: drive name and file. */
  drives(): [string, string][];
}

type Done = MigrationReport & { type: 'done' };
type Progress = Extract<MigrationReport, { type: 'progress' }>;

export class MigrationRun {
  readonly #src: SourceSide;
  readonly #progress: (r: MigrationReport) => void;
  /** The caller's signal: a cancellation by the manager. */
  readonly #cancel: AbortSignal;
  /** The caller's signal or the VM's end. */
  readonly #stop: AbortSignal;
  readonly #startedAt: number;
  #transferred = 0;

  constructor(
    src: SourceSide,
    progress: (r: MigrationReport) => void,
    cancel: AbortSignal,
    stop: AbortSignal,
  ) {
    this.#src = src;
    this.#progress = progress;
    this.#cancel = cancel;
    this.#stop = stop;
    this.#startedAt = src.clock.now();
  }

  #check(): void {
    const name = this.#src.spec().name;
    if (this.#cancel.aborted)
      throw new TernError(
        'cancelled',
        `migration of ${name} cancelled; it keeps running on ${this.#src.hostname}`,
      );
    if (!this.#src.alive())
      throw new TernError('hypervisor_error', `VM ${name} stopped during its migration`);
    if (this.#stop.aborted) throw new TernError('cancelled', `migration of ${name} was stopped`);
  }

  /** Lets `simMs` pass, reporting at least every 200 ms of real time, bytes flowing at `bps`. */
  async #flow(simMs: number, bps: number, report: (sentSoFar: number) => Progress): Promise<void> {
    const clock = this.#src.clock;
    const chunk = 200 * clock.scale;
    let done = 0;
    while (done < simMs) {
      const step = Math.min(chunk, simMs - done);
      await clock.sleep(step, this.#stop).catch(() => {});
      this.#check();
      done += step;
      this.#progress(report(Math.floor((done / 1000) * bps)));
    }
  }

  /** Copies `bytes` at `bps` in one phase (disks, state). */
  async copy(phase: 'disks' | 'state', bytes: number, bps: number): Promise<void> {
    this.#check();
    const start = this.#transferred;
    const report = (sent: number): Progress => {
      const s = Math.min(bytes, sent);
      this.#transferred = start + s;
      return {
        type: 'progress',
        phase,
        transferredBytes: this.#transferred,
        totalBytes: bytes,
        remainingBytes: bytes - s,
        speedMiBps: bps / MiB,
        dirtyBytesPerS: 0,
        expectedDowntimeMs: null,
      };
    };
    this.#progress(report(0));
    await this.#flow((bytes / bps) * 1000, bps, report);
    this.#transferred = start + bytes;
  }

  /** Mirrors the writable disks into the target's NBD exports (their files, here). */
  async mirrorDisks(nbd: NonNullable<MigrateRequest['nbd']>, bps: number): Promise<void> {
    const name = this.#src.spec().name;
    const entry = incoming.byNbd(`${nbd.host}:${nbd.port}`);
    if (!entry || entry.vmId !== this.#src.spec().id || !entry.reachable()) {
      throw new TernError(
        'hypervisor_error',
        `cannot mirror the disks of ${name}: no NBD server at ${nbd.host}:${nbd.port}`,
      );
    }
    const targets = entry.driveFiles();
    const pairs: [string, string][] = [];
    for (const [drive, from] of this.#src.drives()) {
      const to = targets.get(drive);
      if (nbd.drives.includes(drive) && to) pairs.push([from, to]);
    }
    await this.copy(
      'disks',
      pairs.reduce((sum, [from]) => sum + allocatedBytes(from), 0),
      bps,
    );
    // What the mirror leaves behind: the target volumes hold what the source disks hold.
    for (const [from, to] of pairs) fs.copyFileSync(from, to);
  }

  async live(req: MigrateRequest, entry: IncomingEntry, bps: number): Promise<Done> {
    const src = this.#src;
    const memoryBytes = src.spec().memoryMiB * MiB;
    const params = (): PrecopyParams => ({
      memoryBytes,
      bandwidthBps: bps,
      // Read every pass: the dirty rate may change meanwhile, and a paused guest dirties nothing.
      dirtyBps: src.state() === 'paused' ? 0 : src.dirtyMiBps() * MiB,
      downtimeLimitMs: req.downtimeLimitMs,
      autoConverge: req.autoConverge,
      timeoutMs: req.timeoutS * 1000,
    });
    const base = this.#transferred;
    let s = startPrecopy(memoryBytes);
    for (;;) {
      this.#check();
      const p = params();
      const next = precopyRound(s, p);
      if (next.outcome?.converged) {
        const downtimeMs = next.outcome.downtimeMs;
        const undo = src.pause('finish-migrate');
        const stoppedAt = src.clock.now();
        try {
          await src.clock.sleep(downtimeMs, this.#stop).catch(() => {});
          this.#check();
          if (!incoming.has(entry) || !entry.reachable())
            throw new TernError('hypervisor_error', `the target of ${src.spec().name} went away at the end`);
          entry.carried = src.carry();
        } catch (err) {
          undo();
          throw err;
        }
        src.migrated();
        return {
          type: 'done',
          stoppedAt,
          downtimeMs,
          transferredBytes: base + next.transferredBytes,
          totalMs: src.clock.now() - this.#startedAt,
        };
      }
      await this.#pass(s, next, p, base);
      if (next.outcome) {
        throw new TernError(
          'timeout',
          `migration of ${src.spec().name} ${next.outcome.reason}; it keeps running on ${src.hostname}`,
        );
      }
      s = next;
    }
  }

  /** The time of one pre-copy pass, with progress reports along it. */
  async #pass(s: PrecopyState, next: PrecopyState, p: PrecopyParams, base: number): Promise<void> {
    const dirtyBps = p.dirtyBps * (1 - s.throttle);
    await this.#flow(next.elapsedMs - s.elapsedMs, p.bandwidthBps, (sent) => {
      const inPass = Math.min(sent, s.remainingBytes);
      const remaining = s.remainingBytes - inPass;
      return {
        type: 'progress',
        phase: 'memory',
        transferredBytes: base + s.transferredBytes + inPass,
        totalBytes: p.memoryBytes,
        remainingBytes: remaining,
        speedMiBps: p.bandwidthBps / MiB,
        dirtyBytesPerS: dirtyBps,
        expectedDowntimeMs: (remaining / p.bandwidthBps) * 1000,
      };
    });
  }

  /** Suspends the VM to its state file; the target loads it from there. */
  async quick(stateFile: string, bps: number): Promise<Done> {
    const src = this.#src;
    const undo = src.pause('saving state for a quick migration');
    const stoppedAt = src.clock.now();
    try {
      await this.copy('state', src.spec().memoryMiB * MiB, bps);
      writeStateFile(stateFile, src.carry());
    } catch (err) {
      fs.rmSync(`${stateFile}.partial`, { force: true });
      undo();
      throw err;
    }
    src.migrated();
    const now = src.clock.now();
    return {
      type: 'done',
      stoppedAt,
      downtimeMs: now - stoppedAt,
      transferredBytes: this.#transferred,
      totalMs: now - this.#startedAt,
    };
  }
}
