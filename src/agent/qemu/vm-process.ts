/**
 * One VM's QEMU process as the agent supervises it: launched detached so it outlives the
 * agent, reattached after an agent restart, its power actions, and its end (asked, crashed, or
 * its monitor lost). What QEMU reports over QMP is run-state-watch.ts; what the guest agent
 * says (heartbeat, facts, freeze) is guest-watch.ts, probed here on the heartbeat's timer.
 */
import fs from 'node:fs';
import type { Logger } from '../../log.ts';
import type { AgentVm, AgentVmState, VmAction } from '../../wire/agent.ts';
import { emptyGuestInfo, type VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';
import type { LaunchOptions, ResolvedVolumes } from './command-line.ts';
import { GuestWatch } from './guest-watch.ts';
import { Heartbeat } from './heartbeat.ts';
import { type DiskNodes, type MovedNodes, nodesOf, readMovedNodes, writeMovedNodes } from './moved-nodes.ts';
import { powerAction } from './power-actions.ts';
import {
  lastLines,
  qemuRuns,
  readBoots,
  readPid,
  type VmPaths,
  waitQemuEnded,
  writeBoots,
} from './process-files.ts';
import { startQemu } from './qemu-launch.ts';
import type { QgaClient } from './qga.ts';
import { QmpClient, type QmpEvent } from './qmp.ts';
import type { Monitor, QmpEventName } from './qmp-commands.ts';
import * as qmpc from './qmp-commands.ts';
import { RunStateWatch } from './run-state-watch.ts';

export interface VmHooks {
  log: Logger;
  changed: (vm: AgentVm) => void;
  /** The VM stopped on purpose and its runtime state is gone. */
  stopped: (vm: AgentVm) => void;
  heartbeatMs: number;
}

/** What `quitting` holds when the VM left for another host: a later agent keeps no record. */
const released = 'released';

export class VmProcess {
  readonly id: string;
  #spec: VmSpec;
  readonly paths: VmPaths;
  #hooks: VmHooks;
  readonly #g: GuestWatch;
  readonly #heartbeat: Heartbeat;
  /** What QEMU says over QMP (run-state-watch.ts). */
  readonly #run: RunStateWatch;
  #pid: number | null = null;
  #startedAt: string | null = null;
  #quitting: Promise<void> | null = null;
  #closing = false;
  /** Ending on purpose without leaving a record (the VM lives on another host now). */
  #forgotten = false;
  #nodes: MovedNodes = {};
  /** The guest's boots seen in this QEMU: 1 at launch, one more at each RESET event. */
  #boots = 0;

  private constructor(spec: VmSpec, paths: VmPaths, hooks: VmHooks) {
    this.id = spec.id;
    this.#spec = spec;
    this.paths = paths;
    this.#hooks = hooks;
    this.#g = new GuestWatch(spec.id, paths.qga, {
      name: () => this.#spec.name,
      log: hooks.log,
      emit: () => this.#emit(),
      closing: () => this.#closing,
    });
    this.#run = new RunStateWatch({
      id: spec.id,
      log: hooks.log,
      qemuLog: paths.qemuLog,
      spec: () => this.#spec,
      blockNodes: (slot) => this.blockNodes(slot),
      changed: () => this.#emit(),
      guestNow: () => this.#heartbeat.schedule(0),
      reset: () => this.#onReset(),
      poweredOff: () => void this.#quitAfterGuestPoweroff(),
      gone: () => this.#onQemuGone(),
    });
    this.#heartbeat = new Heartbeat({
      everyMs: hooks.heartbeatMs,
      guest: this.#g,
      state: () => this.#run.state,
      closing: () => this.#closing,
      reconnect: () => this.#reconnect(),
      changed: () => this.#emit(),
    });
  }

  get spec(): VmSpec {
    return this.#spec;
  }

  /** QEMU's run state as last seen (running, paused, inmigrate, postmigrate, ...). */
  get status(): string {
    return this.#run.status;
  }

  /**
   * The block nodes of the disk in `slot`. They follow the slot (command-line.ts), except for
   * a disk moved to another volume while the VM runs: QEMU cannot rename nodes, so the new
   * ones are recorded here until QEMU ends.
   */
  blockNodes(slot: number): DiskNodes {
    return nodesOf(this.#nodes, slot);
  }

  setBlockNodes(slot: number, nodes: { file: string; format: string } | null): void {
    this.#nodes = writeMovedNodes(this.paths.nodes, this.#nodes, slot, nodes);
  }

  /** Keeps the guest from being resumed (by request or by QEMU) until `release` is called. */
  hold(reason: string | null): void {
    this.#run.hold = reason;
    if (this.#run.state === 'paused') this.#run.applyStatus(this.#run.status);
    this.#emit();
  }

  get held(): string | null {
    return this.#run.hold;
  }

  /** Reads QEMU's run state afresh (after a change that sends no event, e.g. a migration's end). */
  async refreshState(): Promise<void> {
    await this.#run.refreshStatus();
    this.#emit();
  }

  /** Every QMP event of this VM, for as long as the returned function is not called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    return this.#run.onEvent(listener);
  }

  /** Records a changed spec (a disk added or removed while running) for a later agent. */
  updateSpec(spec: VmSpec): void {
    fs.writeFileSync(`${this.paths.spec}.new`, JSON.stringify(spec));
    fs.renameSync(`${this.paths.spec}.new`, this.paths.spec);
    this.#spec = spec;
  }

  /**
   * After a change the guest should see (a disk plugged in or out): reads the guest's facts
   * until its disk list changes, for at most `timeoutMs`, when the guest agent answers.
   */
  refreshGuestFacts(timeoutMs = 15_000): Promise<void> {
    return this.#g.refreshFacts(timeoutMs);
  }

  /** The guest agent's channel, for commands run inside the guest (guest-exec.ts). */
  get guestChannel(): QgaClient {
    return this.#g.qga;
  }

  /** Resolves when QEMU reports an event of that name matching `filter`. */
  event(name: QmpEventName, timeoutMs: number, filter: (data: Record<string, unknown>) => boolean) {
    return this.#run.event(name, timeoutMs, filter);
  }

  get state(): AgentVmState {
    return this.#run.state;
  }

  snapshot(): AgentVm {
    return {
      id: this.id,
      name: this.spec.name,
      state: this.#run.state,
      reason: this.#run.reason,
      pid: this.#pid,
      vncPort: this.#run.vncPort,
      startedAt: this.#startedAt,
      guest: {
        ...this.#g.guest,
        boots: this.#boots,
        interfaces: this.#g.guest.interfaces.map((i) => ({ ...i })),
      },
    };
  }

  static async launch(
    binary: string,
    spec: VmSpec,
    volumes: ResolvedVolumes,
    paths: VmPaths,
    accel: AcceleratorChoice,
    hooks: VmHooks,
    launch: LaunchOptions = {},
  ): Promise<VmProcess> {
    const { child, qmp } = await startQemu(binary, spec, volumes, paths, accel, launch);
    const vm = new VmProcess(spec, paths, hooks);
    vm.#run.qmp = qmp;
    vm.#pid = child.pid ?? readPid(paths.pidfile);
    vm.#startedAt = new Date().toISOString();
    vm.#boots = 1;
    writeBoots(paths.boots, vm.#boots);
    child.once('exit', () => vm.#onQemuGone());
    try {
      await vm.#run.watch();
    } catch (err) {
      // Never leave behind a QEMU that nothing tracks.
      child.kill('SIGKILL');
      fs.rmSync(paths.runDir, { recursive: true, force: true });
      throw err;
    }
    return vm;
  }

  /** Picks up a VM left by a previous agent process; reports it crashed if its QEMU is gone. */
  static async attach(paths: VmPaths, hooks: VmHooks): Promise<VmProcess | null> {
    let spec: VmSpec;
    try {
      spec = JSON.parse(fs.readFileSync(paths.spec, 'utf8')) as VmSpec;
    } catch {
      hooks.log.warn({ dir: paths.runDir }, 'runtime directory without a readable spec; removed');
      fs.rmSync(paths.runDir, { recursive: true, force: true });
      return null;
    }
    const vm = new VmProcess(spec, paths, hooks);
    vm.#nodes = readMovedNodes(paths.nodes);
    const pid = readPid(paths.pidfile);
    vm.#startedAt = fs.existsSync(paths.pidfile) ? fs.statSync(paths.pidfile).mtime.toISOString() : null;
    if (!qemuRuns(pid, paths.qmp)) {
      if (fs.existsSync(paths.quitting)) {
        const wasReleased = fs.readFileSync(paths.quitting, 'utf8') === released;
        fs.rmSync(paths.runDir, { recursive: true, force: true });
        if (wasReleased) return null;
        hooks.stopped({ ...vm.snapshot(), state: 'stopped', startedAt: null });
        return null;
      }
      vm.#markCrashed('QEMU ended while the agent was not running');
      return vm;
    }
    vm.#pid = pid;
    // Boots while no agent ran went unseen: a reboot waiting for one fails rather than guesses.
    vm.#boots = readBoots(paths.boots);
    // Filesystems frozen by a snapshot this agent's predecessor did not finish are thawed
    // once the guest agent answers.
    vm.#g.freezeUnknown = true;
    try {
      vm.#run.qmp = await QmpClient.connect(paths.qmp, 5000);
    } catch (err) {
      vm.#markUnreachable(`its monitor does not answer: ${(err as Error).message}`);
      return vm;
    }
    try {
      await vm.#run.watch();
    } catch (err) {
      vm.#markUnreachable(`its monitor does not report its status: ${(err as Error).message}`);
    }
    return vm;
  }

  /** The guest starts afresh (a RESET event), its filesystems unfrozen. */
  #onReset(): void {
    this.#boots++;
    try {
      writeBoots(this.paths.boots, this.#boots);
    } catch (err) {
      this.#hooks.log.warn({ vm: this.id, err }, 'could not record the guest boot count');
    }
    this.#g.guest = { ...this.#g.guest, agent: 'not-responding', frozen: false, bootId: null };
    this.#g.pings = 0;
    this.#emit();
  }

  /** With -no-shutdown QEMU stays up after the guest powers off; we finish the job. */
  async #quitAfterGuestPoweroff(): Promise<void> {
    if (this.#closing) return;
    this.#hooks.log.info({ vm: this.id }, 'guest powered off; stopping QEMU');
    await this.#quit().catch((err) =>
      this.#hooks.log.error({ vm: this.id, err }, 'quit after poweroff failed'),
    );
  }

  /**
   * The monitor of the running VM, for the commands of qmp-commands.ts (disk operations and
   * snapshots build on it); it refuses while QEMU does not run.
   */
  get monitor(): Monitor {
    return this.#run.monitor;
  }

  /** Freezes the guest's filesystems for a snapshot (guest-watch.ts). */
  freezeFilesystems(): Promise<void> {
    return this.#g.freeze();
  }

  /** Ends a snapshot's freeze; a thaw that fails is retried by the heartbeat. */
  thawFilesystems(): Promise<void> {
    return this.#g.thaw();
  }

  /**
   * Thaws filesystems that no snapshot holds frozen any more: its agent died between freeze and
   * thaw, or the thaw failed. A frozen guest stops writing altogether, its next snapshot cannot
   * freeze it and its shutdown hangs. Throws when the guest agent cannot say or thaw.
   */
  async thawLeftover(): Promise<void> {
    this.#g.freezeUnknown = true;
    if (this.#g.holdingFreeze) return;
    if (this.#g.guest.agent !== 'responding') throw this.#run.notAvailable();
    await this.#g.thawLeftover();
  }

  /** A power action (power-actions.ts); `kill` forces QEMU off and ends the VM process. */
  async act(action: VmAction): Promise<void> {
    if (action === 'kill') {
      await this.#quit();
      return;
    }
    await powerAction(
      { name: this.spec.name, run: this.#run, qga: this.#g.qga, thawLeftover: () => this.thawLeftover() },
      action,
    );
  }

  /**
   * Ends QEMU and leaves no record behind: no stopped VM for the host to report, neither now
   * nor after an agent restart. For a VM that lives on another host now, or never ran here.
   */
  async release(): Promise<void> {
    this.#forgotten = true;
    this.#run.hold = null;
    if (this.#run.state === 'crashed') {
      this.discard();
      return;
    }
    await this.#quit();
  }

  /**
   * Resolves once an end of QEMU under way (a guest that powered off is ended by the agent) is
   * done: the host reports such a VM stopped while its QEMU is still going away.
   */
  async ended(): Promise<void> {
    await this.#quitting?.catch(() => {});
  }

  /** Ends QEMU at once (force off), waiting until the process is really gone. */
  #quit(): Promise<void> {
    this.#quitting ??= this.#endQemu();
    return this.#quitting;
  }

  async #endQemu(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    fs.writeFileSync(this.paths.quitting, this.#forgotten ? released : '');
    try {
      if (this.#run.qmp) await qmpc.quit(this.#run.qmp, 5000);
    } catch {
      // The monitor may close before answering; the pid check below decides.
    }
    // Without a monitor, QEMU is asked by signal.
    if (this.#pid !== null) await waitQemuEnded(this.#pid, this.paths.qmp, this.#run.state === 'unreachable');
    this.#finishStopped();
  }

  #finishStopped(): void {
    if (this.#run.state === 'stopped') return;
    this.#closing = true;
    this.#stopTimers();
    this.#run.state = 'stopped';
    this.#run.reason = null;
    this.#pid = null;
    this.#boots = 0;
    this.#g.guest = emptyGuestInfo();
    fs.rmSync(this.paths.runDir, { recursive: true, force: true });
    if (this.#forgotten) return;
    this.#hooks.stopped({ ...this.snapshot(), startedAt: null });
    this.#emit();
  }

  #onQemuGone(): void {
    if (this.#run.state === 'stopped' || this.#run.state === 'crashed' || this.#run.state === 'unreachable')
      return;
    if (this.#closing || fs.existsSync(this.paths.quitting)) {
      // #quit finishes the bookkeeping once the pid is gone.
      if (!this.#closing) this.#finishStopped();
      return;
    }
    if (qemuRuns(this.#pid, this.paths.qmp)) {
      this.#hooks.log.warn({ vm: this.id }, 'QMP connection lost while QEMU still runs; reconnecting');
      void QmpClient.connect(this.paths.qmp, 5000)
        .then(async (qmp) => {
          this.#run.qmp = qmp;
          await this.#run.watch();
        })
        .catch((err) => this.#markUnreachable(`its monitor was lost: ${(err as Error).message}`));
      return;
    }
    this.#markCrashed('QEMU ended without being asked to');
  }

  /** QEMU runs but its monitor does not answer (RunStateWatch.unreachable): not a crash. */
  #markUnreachable(why: string): void {
    this.#g.guest = { ...this.#g.guest, agent: 'unknown' };
    this.#run.unreachable(`QEMU runs (pid ${this.#pid}) but ${why}`);
    // Probe the guest agent at once: whether the guest is alive matters to whoever looks.
    this.#heartbeat.schedule(0);
    this.#emit();
  }

  /** The heartbeat's try at the monitor of an unreachable VM; true when it answers again (or QEMU ended). */
  async #reconnect(): Promise<boolean> {
    if (!qemuRuns(this.#pid, this.paths.qmp)) {
      this.#markCrashed('QEMU ended while its monitor did not answer');
      return true;
    }
    return this.#run.reconnect(this.paths.qmp, () => this.#closing);
  }

  #markCrashed(why: string): void {
    // A target QEMU ends when its incoming migration fails: expected, and said so.
    if (this.#run.hold) why = `${this.#run.hold} failed: ${why}`;
    const last = lastLines(this.paths.qemuLog, 3);
    this.#stopTimers();
    this.#run.state = 'crashed';
    this.#run.reason = last ? `${why}; last output: ${last}` : why;
    // A QEMU that still runs (its monitor lost) keeps its pid, so a stop can still end it.
    if (!qemuRuns(this.#pid, this.paths.qmp)) this.#pid = null;
    this.#boots = 0;
    this.#g.guest = { ...emptyGuestInfo(), lastHeartbeat: this.#g.guest.lastHeartbeat };
    this.#hooks.log.error({ vm: this.id }, this.#run.reason);
    this.#emit();
  }

  #stopTimers(): void {
    this.#heartbeat.stop();
    this.#g.qga.close();
    this.#run.qmp?.close();
  }

  /** Drops the record of a crashed VM. */
  discard(): void {
    this.#stopTimers();
    const pid = this.#pid;
    if (qemuRuns(pid, this.paths.qmp)) process.kill(pid, 'SIGKILL');
    fs.rmSync(this.paths.runDir, { recursive: true, force: true });
  }

  /** Lets go of a running VM without touching it (agent shutdown): it keeps running. */
  detach(): void {
    this.#closing = true;
    this.#stopTimers();
  }

  #emit(): void {
    this.#hooks.changed(this.snapshot());
  }
}
