/**
 * The lifetime of one VM's QEMU process: its pid, its start and the guest's boots in it, the
 * heartbeat while it runs, and its end: asked (forced off, released to another host, the guest
 * powered off), found ended unasked (crashed), or its monitor lost while it still runs
 * (unreachable, which is no end). VmProcess (vm-process.ts) is the VM the operations work on;
 * this is what becomes of its QEMU. What QEMU says is run-state-watch.ts, what the guest agent
 * says guest-watch.ts.
 */
import fs from 'node:fs';
import type { Logger } from '../../log.ts';
import type { AgentVm } from '../../wire/agent.ts';
import { emptyGuestInfo } from '../../wire/vm.ts';
import type { GuestWatch } from './guest-watch.ts';
import { Heartbeat } from './heartbeat.ts';
import {
  lastLines,
  qemuRuns,
  type VmPaths,
  waitQemuEnded,
  writeBoots,
  writeQuitting,
} from './process-files.ts';
import { QmpClient } from './qmp.ts';
import * as qmpc from './qmp-commands.ts';
import type { LeftBehind } from './reattach.ts';
import type { RunStateWatch } from './run-state-watch.ts';

export interface LifetimeHooks {
  id: string;
  paths: VmPaths;
  log: Logger;
  heartbeatMs: number;
  run: RunStateWatch;
  guest: GuestWatch;
  /** The VM as shown now (VmProcess.snapshot). */
  snapshot(): AgentVm;
  /** Something shown changed. */
  changed(): void;
  /** QEMU stopped on purpose and the VM's runtime state is gone. */
  stopped(vm: AgentVm): void;
  /** QEMU's process is gone, however it ended (said once per QEMU). */
  ended(): void;
}

export class QemuLifetime {
  pid: number | null = null;
  startedAt: string | null = null;
  /** The guest's boots seen in this QEMU: 1 at launch, one more at each RESET event. */
  boots = 0;
  readonly heartbeat: Heartbeat;
  readonly #h: LifetimeHooks;
  #quitting: Promise<void> | null = null;
  #closing = false;
  #endSaid = false;
  /** Ending on purpose without leaving a record (the VM lives on another host now). */
  #forgotten = false;

  constructor(hooks: LifetimeHooks) {
    this.#h = hooks;
    this.heartbeat = new Heartbeat({
      everyMs: hooks.heartbeatMs,
      guest: hooks.guest,
      state: () => hooks.run.state,
      closing: () => this.#closing,
      reconnect: () => this.#reconnect(),
      changed: () => hooks.changed(),
    });
  }

  /** QEMU is being ended or let go: nothing more is asked of it or of its guest. */
  get closing(): boolean {
    return this.#closing;
  }

  /** A QEMU just launched with pid `pid` (qemu-launch.ts): its guest boots for the first time. */
  launched(pid: number | null): void {
    this.pid = pid;
    this.startedAt = new Date().toISOString();
    this.boots = 1;
    writeBoots(this.#h.paths.boots, this.boots);
  }

  /** A QEMU a previous agent left (reattach.ts): followed again, or found ended. */
  async found(left: Extract<LeftBehind, { kind: 'crashed' | 'running' }>): Promise<void> {
    const { run, paths } = this.#h;
    this.startedAt = left.startedAt;
    if (left.kind === 'crashed') {
      this.#crashed('QEMU ended while the agent was not running');
      return;
    }
    this.pid = left.pid;
    this.boots = left.boots;
    // Filesystems frozen by a snapshot this agent's predecessor did not finish are thawed
    // once the guest agent answers.
    this.#h.guest.freezeUnknown = true;
    try {
      run.qmp = await QmpClient.connect(paths.qmp, 5000);
    } catch (err) {
      this.#unreachable(`its monitor does not answer: ${(err as Error).message}`);
      return;
    }
    try {
      await run.watch();
    } catch (err) {
      this.#unreachable(`its monitor does not report its status: ${(err as Error).message}`);
    }
  }

  /** The guest starts afresh (a RESET event), its filesystems unfrozen. */
  rebooted(): void {
    const { guest } = this.#h;
    this.boots++;
    try {
      writeBoots(this.#h.paths.boots, this.boots);
    } catch (err) {
      this.#h.log.warn({ vm: this.#h.id, err }, 'could not record the guest boot count');
    }
    guest.guest = { ...guest.guest, agent: 'not-responding', frozen: false, bootId: null };
    guest.pings = 0;
    this.#h.changed();
  }

  /** With -no-shutdown QEMU stays up after the guest powers off; we finish the job. */
  async guestPoweredOff(): Promise<void> {
    if (this.#closing) return;
    this.#h.log.info({ vm: this.#h.id }, 'guest powered off; stopping QEMU');
    await this.quit().catch((err) =>
      this.#h.log.error({ vm: this.#h.id, err }, 'quit after poweroff failed'),
    );
  }

  /**
   * Ends QEMU and leaves no record behind: no stopped VM for the host to report, neither now
   * nor after an agent restart. For a VM that lives on another host now, or never ran here.
   */
  async release(): Promise<void> {
    this.#forgotten = true;
    this.#h.run.hold = null;
    if (this.#h.run.state === 'crashed') {
      this.discard();
      return;
    }
    await this.quit();
  }

  /**
   * Resolves once an end of QEMU under way (a guest that powered off is ended by the agent) is
   * done: the host reports such a VM stopped while its QEMU is still going away.
   */
  async ended(): Promise<void> {
    await this.#quitting?.catch(() => {});
  }

  /** Ends QEMU at once (force off), waiting until the process is really gone. */
  quit(): Promise<void> {
    this.#quitting ??= this.#endQemu();
    return this.#quitting;
  }

  async #endQemu(): Promise<void> {
    const { run, paths } = this.#h;
    if (this.#closing) return;
    this.#closing = true;
    writeQuitting(paths.quitting, this.#forgotten);
    try {
      if (run.qmp) await qmpc.quit(run.qmp, 5000);
    } catch {
      // The monitor may close before answering; the pid check below decides.
    }
    // Without a monitor, QEMU is asked by signal.
    if (this.pid !== null) await waitQemuEnded(this.pid, paths.qmp, run.state === 'unreachable');
    this.#finishStopped();
  }

  #finishStopped(): void {
    const { run } = this.#h;
    if (run.state === 'stopped') return;
    this.#closing = true;
    this.#stopTimers();
    run.state = 'stopped';
    run.reason = null;
    this.pid = null;
    this.boots = 0;
    this.#h.guest.guest = emptyGuestInfo();
    fs.rmSync(this.#h.paths.runDir, { recursive: true, force: true });
    this.#ended();
    if (this.#forgotten) return;
    this.#h.stopped({ ...this.#h.snapshot(), startedAt: null });
    this.#h.changed();
  }

  /** QEMU's process exited or its monitor connection closed. */
  gone(): void {
    const { run, paths, log, id } = this.#h;
    if (run.state === 'stopped' || run.state === 'crashed' || run.state === 'unreachable') return;
    if (this.#closing || fs.existsSync(paths.quitting)) {
      // quit finishes the bookkeeping once the pid is gone.
      if (!this.#closing) this.#finishStopped();
      return;
    }
    if (qemuRuns(this.pid, paths.qmp)) {
      log.warn({ vm: id }, 'QMP connection lost while QEMU still runs; reconnecting');
      void QmpClient.connect(paths.qmp, 5000)
        .then(async (qmp) => {
          run.qmp = qmp;
          await run.watch();
        })
        .catch((err) => this.#unreachable(`its monitor was lost: ${(err as Error).message}`));
      return;
    }
    this.#crashed('QEMU ended without being asked to');
  }

  /** QEMU runs but its monitor does not answer (RunStateWatch.unreachable): not a crash. */
  #unreachable(why: string): void {
    const { guest } = this.#h;
    guest.guest = { ...guest.guest, agent: 'unknown' };
    this.#h.run.unreachable(`QEMU runs (pid ${this.pid}) but ${why}`);
    // Probe the guest agent at once: whether the guest is alive matters to whoever looks.
    this.heartbeat.schedule(0);
    this.#h.changed();
  }

  /** The heartbeat's try at the monitor of an unreachable VM; true when it answers again (or QEMU ended). */
  async #reconnect(): Promise<boolean> {
    if (!qemuRuns(this.pid, this.#h.paths.qmp)) {
      this.#crashed('QEMU ended while its monitor did not answer');
      return true;
    }
    return this.#h.run.reconnect(this.#h.paths.qmp, () => this.#closing);
  }

  #crashed(why: string): void {
    const { run, guest, paths } = this.#h;
    // A target QEMU ends when its incoming migration fails: expected, and said so.
    if (run.hold) why = `${run.hold} failed: ${why}`;
    const last = lastLines(paths.qemuLog, 3);
    this.#stopTimers();
    run.state = 'crashed';
    run.reason = last ? `${why}; last output: ${last}` : why;
    // A QEMU that still runs (its monitor lost) keeps its pid, so a stop can still end it.
    if (!qemuRuns(this.pid, paths.qmp)) {
      this.pid = null;
      this.#ended();
    }
    this.boots = 0;
    guest.guest = { ...emptyGuestInfo(), lastHeartbeat: guest.guest.lastHeartbeat };
    this.#h.log.error({ vm: this.#h.id }, run.reason);
    this.#h.changed();
  }

  #stopTimers(): void {
    this.heartbeat.stop();
    this.#h.guest.qga.close();
    this.#h.run.qmp?.close();
  }

  /** Drops the record of a crashed VM. */
  discard(): void {
    this.#stopTimers();
    const pid = this.pid;
    if (qemuRuns(pid, this.#h.paths.qmp)) process.kill(pid, 'SIGKILL');
    fs.rmSync(this.#h.paths.runDir, { recursive: true, force: true });
    this.#ended();
  }

  #ended(): void {
    if (this.#endSaid) return;
    this.#endSaid = true;
    this.#h.ended();
  }

  /** Lets go of a running VM without touching it (agent shutdown): it keeps running. */
  detach(): void {
    this.#closing = true;
    this.#stopTimers();
  }
}
