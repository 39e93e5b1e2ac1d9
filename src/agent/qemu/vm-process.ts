/**
 * One VM's QEMU as the agent's operations see it: launched (qemu-launch.ts) or reattached after
 * an agent restart (reattach.ts), its spec and block nodes, its monitor and events, its guest
 * agent, and its power actions (power-actions.ts). It is put together from what QEMU says over
 * QMP (run-state-watch.ts), what the guest agent says (guest-watch.ts), and what becomes of the
 * QEMU process: its heartbeat and its end, asked, crashed or its monitor lost (qemu-lifetime.ts).
 */
import fs from 'node:fs';
import type { Logger } from '../../log.ts';
import type { AgentVm, AgentVmState, VmAction } from '../../wire/agent.ts';
import type { VmSpec } from '../../wire/vm.ts';
import type { AcceleratorChoice } from './accelerator.ts';
import type { LaunchOptions, ResolvedVolumes } from './command-line.ts';
import { GuestWatch } from './guest-watch.ts';
import { type DiskNodes, type MovedNodes, nodesOf, writeMovedNodes } from './moved-nodes.ts';
import { powerAction } from './power-actions.ts';
import { readPid, type VmPaths } from './process-files.ts';
import { startQemu } from './qemu-launch.ts';
import { QemuLifetime } from './qemu-lifetime.ts';
import type { QgaClient } from './qga.ts';
import type { QmpEvent } from './qmp.ts';
import type { Monitor, QmpEventName } from './qmp-commands.ts';
import { leftBehind } from './reattach.ts';
import { RunStateWatch } from './run-state-watch.ts';
import { applyLinks } from './vm-ports.ts';

export interface VmHooks {
  log: Logger;
  changed: (vm: AgentVm) => void;
  /** The VM stopped on purpose and its runtime state is gone. */
  stopped: (vm: AgentVm) => void;
  /** Its QEMU process is gone (stopped, released, crashed or killed): what it used may go. */
  ended: (id: string) => void;
  heartbeatMs: number;
}

export class VmProcess {
  readonly id: string;
  #spec: VmSpec;
  readonly paths: VmPaths;
  #hooks: VmHooks;
  readonly #g: GuestWatch;
  /** What QEMU says over QMP (run-state-watch.ts). */
  readonly #run: RunStateWatch;
  /** What becomes of its QEMU process (qemu-lifetime.ts). */
  readonly #life: QemuLifetime;
  #nodes: MovedNodes = {};

  private constructor(spec: VmSpec, paths: VmPaths, hooks: VmHooks) {
    this.id = spec.id;
    this.#spec = spec;
    this.paths = paths;
    this.#hooks = hooks;
    this.#g = new GuestWatch(spec.id, paths.qga, {
      name: () => this.#spec.name,
      log: hooks.log,
      emit: () => this.#emit(),
      closing: () => this.#life.closing,
    });
    this.#run = new RunStateWatch({
      id: spec.id,
      log: hooks.log,
      qemuLog: paths.qemuLog,
      spec: () => this.#spec,
      blockNodes: (slot) => this.blockNodes(slot),
      changed: () => this.#emit(),
      guestNow: () => this.#life.heartbeat.schedule(0),
      reset: () => this.#life.rebooted(),
      poweredOff: () => void this.#life.guestPoweredOff(),
      gone: () => this.#life.gone(),
    });
    this.#life = new QemuLifetime({
      id: spec.id,
      paths,
      log: hooks.log,
      heartbeatMs: hooks.heartbeatMs,
      run: this.#run,
      guest: this.#g,
      snapshot: () => this.snapshot(),
      changed: () => this.#emit(),
      stopped: (vm) => hooks.stopped(vm),
      ended: () => hooks.ended(spec.id),
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
      pid: this.#life.pid,
      vncPort: this.#run.vncPort,
      startedAt: this.#life.startedAt,
      guest: {
        ...this.#g.guest,
        boots: this.#life.boots,
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
    vm.#life.launched(child.pid ?? readPid(paths.pidfile));
    child.once('exit', () => vm.#life.gone());
    try {
      await applyLinks(qmp, spec);
      await vm.#run.watch();
    } catch (err) {
      // Never leave behind a QEMU that nothing tracks.
      child.kill('SIGKILL');
      fs.rmSync(paths.runDir, { recursive: true, force: true });
      throw err;
    }
    return vm;
  }

  /**
   * Picks up a VM left by a previous agent process (reattach.ts); reports it crashed if its QEMU
   * is gone, stopped if it ended on purpose.
   */
  static async attach(paths: VmPaths, hooks: VmHooks): Promise<VmProcess | null> {
    const left = leftBehind(paths, hooks.log);
    if (left.kind === 'nothing') return null;
    const vm = new VmProcess(left.spec, paths, hooks);
    if (left.kind === 'stopped') {
      hooks.stopped({ ...vm.snapshot(), state: 'stopped', startedAt: null });
      return null;
    }
    vm.#nodes = left.nodes;
    await vm.#life.found(left);
    return vm;
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
      await this.#life.quit();
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
  release(): Promise<void> {
    return this.#life.release();
  }

  /**
   * Resolves once an end of QEMU under way (a guest that powered off is ended by the agent) is
   * done: the host reports such a VM stopped while its QEMU is still going away.
   */
  ended(): Promise<void> {
    return this.#life.ended();
  }

  /** Drops the record of a crashed VM. */
  discard(): void {
    this.#life.discard();
  }

  /** Lets go of a running VM without touching it (agent shutdown): it keeps running. */
  detach(): void {
    this.#life.detach();
  }

  #emit(): void {
    this.#hooks.changed(this.snapshot());
  }
}
