/**
 * A VM's run state as its QEMU reports it over QMP: the monitor connection, QEMU's own status
 * and the state Tern shows for it (run-state.ts decides), the hold of an incoming migration,
 * I/O errors and corrupt disks, the events others wait on, and a monitor that stopped answering
 * while QEMU runs (unreachable) and its retry. What becomes of the process is qemu-lifetime.ts;
 * this tells it what QEMU said.
 */
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentVmState } from '../../wire/agent.ts';
import type { VmSpec } from '../../wire/vm.ts';
import { corruptDisksFound, corruptEvent, corruptReason } from './disk-corruption.ts';
import type { DiskNodes } from './moved-nodes.ts';
import { tailFile } from './process-files.ts';
import { QmpClient, type QmpEvent } from './qmp.ts';
import * as qmpc from './qmp-commands.ts';
import { type Monitor, type QmpEventName, qmpEvents } from './qmp-commands.ts';
import { runState } from './run-state.ts';

export interface RunStateHooks {
  id: string;
  log: Logger;
  qemuLog: string;
  spec(): VmSpec;
  blockNodes(slot: number): DiskNodes;
  /** Something shown changed. */
  changed(): void;
  /** The guest may answer now (it runs again, or qemu-ga opened its port): probe it at once. */
  guestNow(): void;
  /** The guest rebooted (a RESET event). */
  reset(): void;
  /** The guest powered off; QEMU stays up (-no-shutdown) until it is ended. */
  poweredOff(): void;
  /** The monitor connection closed. */
  gone(): void;
}

export class RunStateWatch {
  qmp: QmpClient | null = null;
  state: AgentVmState = 'running';
  reason: string | null = null;
  /** QEMU's own run state, finer than `state` (e.g. inmigrate, postmigrate). */
  status = 'running';
  /** While set, the guest may not be resumed except by the one who set it (an incoming migration). */
  hold: string | null = null;
  /** A disk QEMU found corrupt while this QEMU runs: the reason a running VM carries. */
  corrupt: string | null = null;
  vncPort: number | null = null;
  readonly #hooks: RunStateHooks;
  readonly #listeners = new Set<(e: QmpEvent) => void>();

  constructor(hooks: RunStateHooks) {
    this.#hooks = hooks;
  }

  /**
   * The monitor of the running VM, for the commands of qmp-commands.ts (disk operations and
   * snapshots build on it); it refuses while QEMU does not run.
   */
  readonly monitor: Monitor = {
    execute: <T>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> => {
      if (!this.qmp || this.state === 'crashed' || this.state === 'stopped' || this.state === 'unreachable')
        return Promise.reject(this.notAvailable());
      return this.qmp.execute<T>(command, args, timeoutMs);
    },
  };

  /** Why the VM takes no command now. */
  notAvailable(): TernError {
    const name = this.#hooks.spec().name;
    if (this.state === 'unreachable')
      return new TernError('conflict', `VM ${name} is unreachable: ${this.reason}`);
    if (this.state === 'running' || this.state === 'paused')
      return new TernError('guest_error', `the guest agent of ${name} does not answer`);
    return new TernError('conflict', `VM ${name} is not running (${this.state})`);
  }

  /** Every QMP event of this VM, for as long as the returned function is not called. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when QEMU reports an event of that name matching `filter`. */
  event(name: QmpEventName, timeoutMs: number, filter: (data: Record<string, unknown>) => boolean) {
    if (!this.qmp)
      return Promise.reject(new TernError('conflict', `VM ${this.#hooks.spec().name} is not running`));
    return this.qmp.waitForEvent(name, timeoutMs, (e) => filter(e.data));
  }

  /**
   * QEMU runs (its pid is alive and its command line is ours) but its monitor does not answer:
   * a deleted socket, a hung or stopped QEMU. Its guest may well be alive, so this is not a
   * crash and nothing ends it on a guess; the heartbeat keeps trying the monitor (`reconnect`)
   * and the guest agent, and a monitor that answers again brings the VM back.
   */
  unreachable(reason: string): void {
    this.state = 'unreachable';
    this.reason = reason;
    const qmp = this.qmp;
    this.qmp = null;
    qmp?.close();
    this.#hooks.log.error({ vm: this.#hooks.id }, reason);
  }

  /**
   * One try at the monitor of an unreachable VM at `socket`; true when it answers again (or
   * QEMU is being ended meanwhile, `closing`), and then it is followed again.
   */
  async reconnect(socket: string, closing: () => boolean): Promise<boolean> {
    let qmp: QmpClient | null = null;
    try {
      qmp = await QmpClient.connect(socket, 3000);
      if (closing()) {
        qmp.close();
        return true;
      }
      this.qmp = qmp;
      await this.watch();
      this.#hooks.log.info({ vm: this.#hooks.id }, 'the monitor answers again');
      return true;
    } catch {
      if (this.qmp === qmp) this.qmp = null;
      qmp?.close();
      return false;
    }
  }

  /** Follows the monitor connection `qmp` holds now: its events, QEMU's status, VNC port, disks. */
  async watch(): Promise<void> {
    const qmp = this.qmp!;
    qmp.on('event', (e) => this.#onEvent(e));
    qmp.on('close', () => this.#hooks.gone());
    await this.refreshStatus();
    await this.#readCorruptDisks().catch(() => {});
    try {
      this.vncPort = await qmpc.vncPort(qmp);
    } catch {
      this.vncPort = null;
    }
    this.#hooks.guestNow();
    this.#hooks.changed();
  }

  async refreshStatus(): Promise<void> {
    this.applyStatus(await qmpc.status(this.qmp!));
    if (this.state === 'shutdown') this.#hooks.poweredOff();
  }

  applyStatus(status: string): void {
    const next = runState(status, { hold: this.hold, reason: this.reason, corrupt: this.corrupt });
    this.state = next.state;
    this.status = status;
    this.reason = next.reason;
  }

  /** A disk QEMU found corrupt (disk-corruption.ts): the reason a running VM carries. */
  #noteCorrupt(node: string, detail: string): void {
    if (this.corrupt) return;
    this.corrupt = corruptReason(this.#hooks.spec(), (slot) => this.#hooks.blockNodes(slot), node, detail);
    this.#hooks.log.error({ vm: this.#hooks.id, node }, this.corrupt);
    this.applyStatus(this.status);
    this.#hooks.changed();
  }

  async #readCorruptDisks(): Promise<void> {
    const devices = await qmpc.queryBlock(this.qmp!);
    const found = corruptDisksFound(
      this.#hooks.spec(),
      (slot) => this.#hooks.blockNodes(slot),
      devices,
      () => tailFile(this.#hooks.qemuLog, 16 * 1024),
    );
    for (const { node, detail } of found) this.#noteCorrupt(node, detail);
  }

  #onEvent(e: QmpEvent): void {
    for (const listener of this.#listeners) listener(e);
    switch (e.event) {
      case qmpEvents.stop:
      case qmpEvents.resume:
      case qmpEvents.shutdown:
        this.refreshStatus()
          .then(() => {
            this.#hooks.changed();
            // A guest that runs again (resumed, or arrived by migration) is probed at once
            // rather than at the next tick, so its agent is seen answering promptly.
            if (e.event === qmpEvents.resume) this.#hooks.guestNow();
          })
          .catch(() => {});
        break;
      case qmpEvents.blockIoError: {
        const d = e.data as { device?: string; 'node-name'?: string; nospace?: boolean; action?: string };
        if (d.action === 'stop') {
          this.reason = d.nospace
            ? `storage full: disk ${d['node-name'] ?? d.device ?? '?'} cannot grow`
            : `I/O error on disk ${d['node-name'] ?? d.device ?? '?'}`;
          this.#hooks.log.warn({ vm: this.#hooks.id, event: d }, this.reason);
        }
        break;
      }
      case qmpEvents.blockImageCorrupted: {
        const { node, detail } = corruptEvent(e.data);
        this.#noteCorrupt(node, detail);
        break;
      }
      case qmpEvents.vserportChange: {
        // qemu-ga opened (or closed) its port: probe now instead of at the next tick.
        const d = e.data as { id?: string; open?: boolean };
        if (d.id === 'qga0-port' && d.open) this.#hooks.guestNow();
        break;
      }
      case qmpEvents.reset:
        this.#hooks.reset();
        break;
    }
  }
}
