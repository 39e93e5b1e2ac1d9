/**
 * One VM's QEMU process as the agent supervises it: launched detached so it outlives the
 * agent, reattached after an agent restart, watched through QMP events, and probed through
 * the guest agent for a heartbeat and guest facts.
 */
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentVm, AgentVmState, VmAction } from '../../wire/agent.ts';
import { emptyGuestInfo, type VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';
import type { LaunchOptions, ResolvedVolumes } from './command-line.ts';
import { corruptDisksFound, corruptEvent, corruptReason } from './disk-corruption.ts';
import { guestPower } from './guest-power.ts';
import { GuestWatch } from './guest-watch.ts';
import { type DiskNodes, type MovedNodes, nodesOf, readMovedNodes, writeMovedNodes } from './moved-nodes.ts';
import {
  lastLines,
  qemuRuns,
  readBoots,
  readPid,
  tailFile,
  type VmPaths,
  waitQemuEnded,
  writeBoots,
} from './process-files.ts';
import { startQemu } from './qemu-launch.ts';
import type { QgaClient } from './qga.ts';
import { QmpClient, type QmpEvent } from './qmp.ts';
import * as qmpc from './qmp-commands.ts';
import { type Monitor, type QmpEventName, qmpEvents } from './qmp-commands.ts';
import { runState } from './run-state.ts';

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
  #qmp: QmpClient | null = null;
  readonly #g: GuestWatch;
  #state: AgentVmState = 'running';
  #reason: string | null = null;
  #pid: number | null = null;
  #vncPort: number | null = null;
  #startedAt: string | null = null;
  #timer: NodeJS.Timeout | null = null;
  /** A disk QEMU found corrupt while this QEMU runs: the reason a running VM carries. */
  #corrupt: string | null = null;
  #quitting: Promise<void> | null = null;
  #closing = false;
  /** Ending on purpose without leaving a record (the VM lives on another host now). */
  #forgotten = false;
  /** QEMU's own run state, finer than `state` (e.g. inmigrate, postmigrate). */
  #status = 'running';
  /** While set, the guest may not be resumed except by the one who set it (an incoming migration). */
  #hold: string | null = null;
  #nodes: MovedNodes = {};
  /** The guest's boots seen in this QEMU: 1 at launch, one more at each RESET event. */
  #boots = 0;
  readonly #listeners = new Set<(e: QmpEvent) => void>();

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
  }

  get spec(): VmSpec {
    return this.#spec;
  }

  /** QEMU's run state as last seen (running, paused, inmigrate, postmigrate, ...). */
  get status(): string {
    return this.#status;
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
    this.#hold = reason;
    if (this.#state === 'paused') this.#applyStatus(this.#status);
    this.#emit();
  }

  get held(): string | null {
    return this.#hold;
  }

  /** Reads QEMU's run state afresh (after a change that sends no event, e.g. a migration's end). */
  async refreshState(): Promise<void> {
    await this.#refreshStatus();
    this.#emit();
  }

  /** Every QMP event of this VM, for as long as the returned function is not called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
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
    if (!this.#qmp) return Promise.reject(new TernError('conflict', `VM ${this.#spec.name} is not running`));
    return this.#qmp.waitForEvent(name, timeoutMs, (e) => filter(e.data));
  }

  get state(): AgentVmState {
    return this.#state;
  }

  snapshot(): AgentVm {
    return {
      id: this.id,
      name: this.spec.name,
      state: this.#state,
      reason: this.#reason,
      pid: this.#pid,
      vncPort: this.#vncPort,
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
    vm.#qmp = qmp;
    vm.#pid = child.pid ?? readPid(paths.pidfile);
    vm.#startedAt = new Date().toISOString();
    vm.#boots = 1;
    writeBoots(paths.boots, vm.#boots);
    child.once('exit', () => vm.#onQemuGone());
    try {
      await vm.#watch();
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
      vm.#qmp = await QmpClient.connect(paths.qmp, 5000);
    } catch (err) {
      vm.#markUnreachable(`its monitor does not answer: ${(err as Error).message}`);
      return vm;
    }
    try {
      await vm.#watch();
    } catch (err) {
      vm.#markUnreachable(`its monitor does not report its status: ${(err as Error).message}`);
    }
    return vm;
  }

  async #watch(): Promise<void> {
    const qmp = this.#qmp!;
    qmp.on('event', (e) => this.#onEvent(e));
    qmp.on('close', () => this.#onQemuGone());
    await this.#refreshStatus();
    await this.#readCorruptDisks().catch(() => {});
    try {
      this.#vncPort = await qmpc.vncPort(qmp);
    } catch {
      this.#vncPort = null;
    }
    this.#scheduleHeartbeat(0);
    this.#emit();
  }

  async #refreshStatus(): Promise<void> {
    this.#applyStatus(await qmpc.status(this.#qmp!));
    if (this.#state === 'shutdown') void this.#quitAfterGuestPoweroff();
  }

  #applyStatus(status: string): void {
    const next = runState(status, { hold: this.#hold, reason: this.#reason, corrupt: this.#corrupt });
    this.#state = next.state;
    this.#status = status;
    this.#reason = next.reason;
  }

  /** A disk QEMU found corrupt (disk-corruption.ts): the reason a running VM carries. */
  #noteCorrupt(node: string, detail: string): void {
    if (this.#corrupt) return;
    this.#corrupt = corruptReason(this.spec, (slot) => this.blockNodes(slot), node, detail);
    this.#hooks.log.error({ vm: this.id, node }, this.#corrupt);
    this.#applyStatus(this.#status);
    this.#emit();
  }

  async #readCorruptDisks(): Promise<void> {
    const devices = await qmpc.queryBlock(this.#qmp!);
    const found = corruptDisksFound(
      this.spec,
      (slot) => this.blockNodes(slot),
      devices,
      () => tailFile(this.paths.qemuLog, 16 * 1024),
    );
    for (const { node, detail } of found) this.#noteCorrupt(node, detail);
  }

  #onEvent(e: QmpEvent): void {
    for (const listener of this.#listeners) listener(e);
    switch (e.event) {
      case qmpEvents.stop:
      case qmpEvents.resume:
      case qmpEvents.shutdown:
        this.#refreshStatus()
          .then(() => {
            this.#emit();
            // A guest that runs again (resumed, or arrived by migration) is probed at once
            // rather than at the next tick, so its agent is seen answering promptly.
            if (e.event === qmpEvents.resume) this.#scheduleHeartbeat(0);
          })
          .catch(() => {});
        break;
      case qmpEvents.blockIoError: {
        const d = e.data as { device?: string; 'node-name'?: string; nospace?: boolean; action?: string };
        if (d.action === 'stop') {
          this.#reason = d.nospace
            ? `storage full: disk ${d['node-name'] ?? d.device ?? '?'} cannot grow`
            : `I/O error on disk ${d['node-name'] ?? d.device ?? '?'}`;
          this.#hooks.log.warn({ vm: this.id, event: d }, this.#reason);
        }
        break;
      }
      case qmpEvents.blockImageCorrupted: {
        const { node, detail } = corruptEvent(e.data);
        this.#noteCorrupt(node, detail);
        break;
      }
      case qmpEvents.vserportChange:
        // qemu-ga opened (or closed) its port: probe now instead of at the next tick.
        {
          const d = e.data as { id?: string; open?: boolean };
          if (d.id === 'qga0-port' && d.open) this.#scheduleHeartbeat(0);
        }
        break;
      case qmpEvents.reset:
        // The guest starts afresh, its filesystems unfrozen.
        this.#boots++;
        try {
          writeBoots(this.paths.boots, this.#boots);
        } catch (err) {
          this.#hooks.log.warn({ vm: this.id, err }, 'could not record the guest boot count');
        }
        this.#g.guest = { ...this.#g.guest, agent: 'not-responding', frozen: false, bootId: null };
        this.#g.pings = 0;
        this.#emit();
        break;
    }
  }

  /** With -no-shutdown QEMU stays up after the guest powers off; we finish the job. */
  async #quitAfterGuestPoweroff(): Promise<void> {
    if (this.#closing) return;
    this.#hooks.log.info({ vm: this.id }, 'guest powered off; stopping QEMU');
    await this.#quit().catch((err) =>
      this.#hooks.log.error({ vm: this.id, err }, 'quit after poweroff failed'),
    );
  }

  #scheduleHeartbeat(ms: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => void this.#heartbeat(), ms);
  }

  async #heartbeat(): Promise<void> {
    this.#timer = null;
    if (this.#closing || this.#state === 'crashed' || this.#state === 'stopped') return;
    // #watch schedules the next beat once the monitor answers again.
    if (this.#state === 'unreachable' && (await this.#reconnect())) return;
    if (this.#state !== 'running' && this.#state !== 'unreachable') {
      this.#scheduleHeartbeat(this.#hooks.heartbeatMs);
      return;
    }
    await this.#g.beat();
    if (this.#closing) return;
    this.#emit();
    // Until the guest agent first answers, probe often so a booting VM is seen promptly.
    this.#scheduleHeartbeat(
      this.#g.guest.agent === 'responding' || this.#state === 'unreachable' ? this.#hooks.heartbeatMs : 500,
    );
  }

  /**
   * The monitor of the running VM, for the commands of qmp-commands.ts (disk operations and
   * snapshots build on it); it refuses while QEMU does not run.
   */
  readonly monitor: Monitor = {
    execute: <T>(command: string, args?: Record<string, unknown>, timeoutMs?: number) =>
      this.#monitor<T>(command, args, timeoutMs),
  };

  #monitor<T>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (
      !this.#qmp ||
      this.#state === 'crashed' ||
      this.#state === 'stopped' ||
      this.#state === 'unreachable'
    ) {
      return Promise.reject(this.#notAvailable());
    }
    return this.#qmp.execute<T>(command, args, timeoutMs);
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
    if (this.#g.guest.agent !== 'responding') throw this.#notAvailable();
    await this.#g.thawLeftover();
  }

  /** Why the VM takes no command now. */
  #notAvailable(): TernError {
    if (this.#state === 'unreachable')
      return new TernError('conflict', `VM ${this.spec.name} is unreachable: ${this.#reason}`);
    if (this.#state === 'running' || this.#state === 'paused')
      return new TernError('guest_error', `the guest agent of ${this.spec.name} does not answer`);
    return new TernError('conflict', `VM ${this.spec.name} is not running (${this.#state})`);
  }

  async act(action: VmAction): Promise<void> {
    if (action === 'kill') {
      await this.#quit();
      return;
    }
    if (this.#state === 'crashed' || this.#state === 'unreachable' || !this.#qmp) throw this.#notAvailable();
    const qmp = this.#qmp;
    switch (action) {
      case 'thaw':
        await this.thawLeftover();
        break;
      case 'powerdown':
        await qmpc.systemPowerdown(qmp);
        break;
      case 'reset':
        await qmpc.systemReset(qmp);
        break;
      case 'pause':
        await qmpc.stop(qmp);
        break;
      case 'resume':
        // A `cont` before an incoming migration's state arrived would start the guest as
        // soon as it does, behind the back of whoever decides which copy runs.
        if (this.#hold) throw new TernError('conflict', `VM ${this.spec.name} is held: ${this.#hold}`);
        await qmpc.cont(qmp);
        break;
      case 'guest-shutdown':
      case 'guest-reboot':
        if (this.#state !== 'running')
          throw new TernError('conflict', `VM ${this.spec.name} is ${this.#state}`);
        await guestPower(
          this.#g.qga,
          (l) => this.onEvent(l),
          action === 'guest-reboot' ? 'reboot' : 'powerdown',
        );
        break;
    }
    if (action === 'pause' || action === 'resume') await this.#refreshStatus();
  }

  /**
   * Ends QEMU and leaves no record behind: no stopped VM for the host to report, neither now
   * nor after an agent restart. For a VM that lives on another host now, or never ran here.
   */
  async release(): Promise<void> {
    this.#forgotten = true;
    this.#hold = null;
    if (this.#state === 'crashed') {
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
      if (this.#qmp) await qmpc.quit(this.#qmp, 5000);
    } catch {
      // The monitor may close before answering; the pid check below decides.
    }
    // Without a monitor, QEMU is asked by signal.
    if (this.#pid !== null) await waitQemuEnded(this.#pid, this.paths.qmp, this.#state === 'unreachable');
    this.#finishStopped();
  }

  #finishStopped(): void {
    if (this.#state === 'stopped') return;
    this.#closing = true;
    this.#stopTimers();
    this.#state = 'stopped';
    this.#reason = null;
    this.#pid = null;
    this.#boots = 0;
    this.#g.guest = emptyGuestInfo();
    fs.rmSync(this.paths.runDir, { recursive: true, force: true });
    if (this.#forgotten) return;
    this.#hooks.stopped({ ...this.snapshot(), startedAt: null });
    this.#emit();
  }

  #onQemuGone(): void {
    if (this.#state === 'stopped' || this.#state === 'crashed' || this.#state === 'unreachable') return;
    if (this.#closing || fs.existsSync(this.paths.quitting)) {
      // #quit finishes the bookkeeping once the pid is gone.
      if (!this.#closing) this.#finishStopped();
      return;
    }
    if (qemuRuns(this.#pid, this.paths.qmp)) {
      this.#hooks.log.warn({ vm: this.id }, 'QMP connection lost while QEMU still runs; reconnecting');
      void QmpClient.connect(this.paths.qmp, 5000)
        .then(async (qmp) => {
          this.#qmp = qmp;
          await this.#watch();
        })
        .catch((err) => this.#markUnreachable(`its monitor was lost: ${(err as Error).message}`));
      return;
    }
    this.#markCrashed('QEMU ended without being asked to');
  }

  /**
   * QEMU runs (its pid is alive and its command line is ours) but its monitor does not answer:
   * a deleted socket, a hung or stopped QEMU. Its guest may well be alive, so this is not a
   * crash and nothing ends it on a guess; the heartbeat keeps trying the monitor and the guest
   * agent, and a monitor that answers again brings the VM back.
   */
  #markUnreachable(why: string): void {
    this.#state = 'unreachable';
    this.#reason = `QEMU runs (pid ${this.#pid}) but ${why}`;
    const qmp = this.#qmp;
    this.#qmp = null;
    qmp?.close();
    this.#g.guest = { ...this.#g.guest, agent: 'unknown' };
    this.#hooks.log.error({ vm: this.id }, this.#reason);
    // Probe the guest agent at once: whether the guest is alive matters to whoever looks.
    this.#scheduleHeartbeat(0);
    this.#emit();
  }

  /** One try at the monitor of an unreachable VM; true when it answers again (or QEMU ended). */
  async #reconnect(): Promise<boolean> {
    if (!qemuRuns(this.#pid, this.paths.qmp)) {
      this.#markCrashed('QEMU ended while its monitor did not answer');
      return true;
    }
    let qmp: QmpClient | null = null;
    try {
      qmp = await QmpClient.connect(this.paths.qmp, 3000);
      if (this.#closing) {
        qmp.close();
        return true;
      }
      this.#qmp = qmp;
      await this.#watch();
      this.#hooks.log.info({ vm: this.id }, 'the monitor answers again');
      return true;
    } catch {
      if (this.#qmp === qmp) this.#qmp = null;
      qmp?.close();
      return false;
    }
  }

  #markCrashed(why: string): void {
    // A target QEMU ends when its incoming migration fails: expected, and said so.
    if (this.#hold) why = `${this.#hold} failed: ${why}`;
    const last = lastLines(this.paths.qemuLog, 3);
    this.#stopTimers();
    this.#state = 'crashed';
    this.#reason = last ? `${why}; last output: ${last}` : why;
    // A QEMU that still runs (its monitor lost) keeps its pid, so a stop can still end it.
    if (!qemuRuns(this.#pid, this.paths.qmp)) this.#pid = null;
    this.#boots = 0;
    this.#g.guest = { ...emptyGuestInfo(), lastHeartbeat: this.#g.guest.lastHeartbeat };
    this.#hooks.log.error({ vm: this.id }, this.#reason);
    this.#emit();
  }

  #stopTimers(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#g.qga.close();
    this.#qmp?.close();
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
