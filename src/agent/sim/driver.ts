/**
 * The `sim` hypervisor driver: simulated VMs on a simulated host, behind the same interface
 * (and so the same agent protocol) as the QEMU driver, for scale and fault tests of the real
 * manager. VM states, reasons, events, tombstones, memory accounting and live migration follow
 * the real driver; storage stays real files in the host's pools. See README.md for what is
 * simulated and the knobs.
 */

import { EventEmitter } from 'node:events';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type {
  AgentVm,
  FinishIncomingResult,
  IncomingMigration,
  IncomingMigrationRequest,
  MigrateRequest,
  MigrationReport,
  MoveDiskRequest,
  VmAction,
} from '../../wire/agent.ts';
import type {
  BackupVmReport,
  BackupVmRequest,
  BackupVmResult,
  LiveRestoreRequest,
  TransferProgress,
} from '../../wire/backup.ts';
import type { GuestExecResult } from '../../wire/guest-command.ts';
import type { HostFacts } from '../../wire/host.ts';
import type { PortRules } from '../../wire/network.ts';
import type { ReplicateVmReport, ReplicateVmRequest, ReplicateVmResult } from '../../wire/replication.ts';
import type { DiskSpec, NicSpec, VmSpec, VolumeRef } from '../../wire/vm.ts';
import type { DriverEvents, HypervisorDriver } from '../driver.ts';
import { RecordedNetworks } from '../network/recorded-networks.ts';
import type { ReplicaLink } from '../replication/replica-link.ts';
import { replicationView, sendReplica } from '../replication/sender.ts';
import { backupViewOf, SimDiskContents } from './backup.ts';
import { SimClock } from './clock.ts';
import { attachDisk, changeCdrom, deleteSnapshot, detachDisk, resizeDisk, snapshot } from './disk-ops.ts';
import { PoolUsage } from './disks.ts';
import { simFacts } from './facts.ts';
import { SimFaults, type SimOperation } from './faults.ts';
import * as guestFaults from './guest-faults.ts';
import { SimLiveRestores } from './live-restore.ts';
import {
  abortIncoming,
  finishIncoming,
  migrateOut,
  moveDisk,
  prepareIncoming,
  releaseMigrated,
  type SimLink,
} from './migrate-vm.ts';
import { linkNic, plugNic, setNicRules, unplugNic } from './nic-ops.ts';
import { poolTotals, type SimDriverOptions, type SimSettings, simSettings } from './options.ts';
import { SimVms } from './vms.ts';

const _MiB = 1024 * 1024;

export class SimDriver implements HypervisorDriver {
  readonly events = new EventEmitter<DriverEvents>();
  readonly networks = new RecordedNetworks();
  readonly faults = new SimFaults();
  readonly hostname: string;
  readonly clock: SimClock;
  readonly #o: SimSettings;
  readonly #totals: Record<string, number>;
  readonly #log: Logger | undefined;
  readonly #usage = new PoolUsage();
  /** The VMs and their life (vms.ts). */
  readonly #sim: SimVms;
  readonly #link: SimLink;
  /** What the guests wrote to their disks, and the disks' dirty bitmaps (backup.ts). */
  readonly #contents: SimDiskContents;
  readonly #liveRestores: SimLiveRestores;
  #heartbeat: NodeJS.Timeout | null = null;

  constructor(opts: SimDriverOptions) {
    this.hostname = opts.hostname;
    this.clock = opts.clock ?? new SimClock();
    this.#log = opts.log;
    this.#o = simSettings(opts);
    this.#sim = new SimVms({
      ...this.#o,
      clock: this.clock,
      log: this.#log,
      events: this.events,
      networks: this.networks,
    });
    this.#link = {
      networkMiBps: this.#o.networkMiBps,
      diskMiBps: this.#o.diskMiBps,
      reachable: () => this.faults.reachable && !this.#sim.poweredOff,
    };
    this.#totals = poolTotals(opts);
    this.#contents = new SimDiskContents(this.#o.pools);
    this.#liveRestores = new SimLiveRestores(this.#o.pools);
    // QEMU killed or lost never stores its bitmaps: every crash, however it came, leaves them
    // inconsistent.
    this.events.on('vm', (vm) => {
      const disks = this.#sim.vms.get(vm.id)?.spec.disks;
      if (vm.state === 'crashed' && disks) this.#contents.crashed(disks.map((d) => d.volume));
    });
  }

  // --- the driver interface --------------------------------------------------------------------

  async init(): Promise<void> {
    for (const vm of this.#sim.vms.values()) {
      if (vm.state === 'running' && !vm.booted && !vm.incoming) this.#sim.scheduleBoot(vm);
    }
    const every = this.#o.guestHeartbeatMs;
    if (every > 0 && !this.#heartbeat) {
      this.#heartbeat = setInterval(() => this.#sim.beat(), this.clock.real(every));
      this.#heartbeat.unref();
    }
  }

  async facts(): Promise<HostFacts> {
    await this.#enter('facts');
    return simFacts({
      hostname: this.hostname,
      o: this.#o,
      totals: this.#totals,
      usage: this.#usage,
      networks: this.networks,
    });
  }

  list(): AgentVm[] {
    if (this.#sim.poweredOff) return [];
    return [
      ...[...this.#sim.vms.values()].map((vm) => this.#sim.snapshot(vm)),
      ...this.#sim.stopped.values(),
    ];
  }

  spec(id: string): VmSpec | undefined {
    if (this.#sim.poweredOff) return undefined;
    return this.#sim.vms.get(id)?.spec;
  }

  get(id: string): AgentVm | undefined {
    if (this.#sim.poweredOff) return undefined;
    const vm = this.#sim.vms.get(id);
    return vm ? this.#sim.snapshot(vm) : this.#sim.stopped.get(id);
  }

  async run(spec: VmSpec): Promise<AgentVm> {
    await this.#enter('run');
    this.#sim.checkVolumes(spec);
    const existing = this.#sim.vms.get(spec.id);
    if (existing && existing.state !== 'crashed') return this.#sim.snapshot(existing);
    await this.#contents.open(spec.disks.map((d) => d.volume));
    this.#sim.reserveMemory(spec);
    this.#sim.stopped.delete(spec.id);
    if (existing) this.#sim.discard(existing);
    await this.#sim.plugPorts(spec);
    const vm = this.#sim.add(spec, 'running', null);
    vm.boots = 1;
    this.#sim.appendConsole(
      spec.id,
      `[sim] ${spec.name}: power on, ${spec.vcpus} vCPU, ${spec.memoryMiB} MiB`,
    );
    this.#sim.scheduleBoot(vm);
    this.#log?.info({ vm: spec.id, name: spec.name }, 'started VM');
    this.#sim.emit(vm);
    return this.#sim.snapshot(vm);
  }

  async act(id: string, action: VmAction): Promise<AgentVm> {
    await this.#enter('act');
    const vm = this.#sim.vms.get(id);
    if (!vm) {
      const stopped = this.#sim.stopped.get(id);
      // Forcing off what is already off is done, not an error: a retried stop must succeed.
      if (stopped && action === 'kill') return stopped;
      throw new TernError(stopped ? 'conflict' : 'not_found', `VM ${id} is not running on this host`);
    }
    if (action === 'kill') {
      if (vm.state === 'crashed') {
        await this.forget(id);
        return { ...this.#sim.snapshot(vm), state: 'stopped', reason: null, pid: null };
      }
      return this.#sim.stop(vm);
    }
    return this.#sim.act(vm, action);
  }

  async forget(id: string): Promise<void> {
    await this.#enter('forget');
    this.#sim.stopped.delete(id);
    const vm = this.#sim.vms.get(id);
    if (!vm) {
      this.#sim.consoles.delete(id);
      return;
    }
    if (vm.state !== 'crashed') throw new TernError('conflict', `VM ${id} is ${vm.state}; stop it first`);
    this.#sim.discard(vm);
    this.#sim.consoles.delete(id);
    this.events.emit('gone', id);
  }

  async consoleTail(id: string, maxBytes: number): Promise<string> {
    await this.#enter('consoleTail');
    const text = Buffer.from(this.#sim.consoles.get(id) ?? '');
    return text.subarray(Math.max(0, text.length - maxBytes)).toString('utf8');
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    await this.#enter('resizeDisk');
    return resizeDisk(this.#sim, id, index, sizeBytes);
  }

  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    await this.#enter('attachDisk');
    return attachDisk(this.#sim, id, disk);
  }

  /** The simulated guest never locks its tray: a change always goes through. */
  async changeCdrom(id: string, medium: VolumeRef | null, _force: boolean): Promise<void> {
    await this.#enter('changeCdrom');
    return changeCdrom(this.#sim, id, medium, _force);
  }

  async detachDisk(id: string, index: number): Promise<void> {
    await this.#enter('detachDisk');
    return detachDisk(this.#sim, id, index);
  }

  async plugNic(id: string, nic: NicSpec): Promise<void> {
    await this.#enter('plugNic');
    return plugNic(this.#sim, id, nic);
  }

  async unplugNic(id: string, mac: string): Promise<void> {
    await this.#enter('unplugNic');
    return unplugNic(this.#sim, id, mac);
  }

  async linkNic(id: string, mac: string, link: 'up' | 'down'): Promise<void> {
    await this.#enter('linkNic');
    return linkNic(this.#sim, id, mac, link);
  }

  async setNicRules(id: string, mac: string, rules: PortRules | null): Promise<void> {
    await this.#enter('setNicRules');
    return setNicRules(this.#sim, id, mac, rules);
  }

  async snapshot(id: string, name: string) {
    await this.#enter('snapshot');
    return snapshot(this.#sim, id, name);
  }

  async deleteSnapshot(id: string, name: string): Promise<void> {
    await this.#enter('deleteSnapshot');
    return deleteSnapshot(this.#sim, id, name);
  }

  // The simulated guest has no programs and no files: it says so rather than making output up.
  async guestExec(id: string): Promise<GuestExecResult> {
    await this.#enter('guestExec');
    throw notInSim(this.#sim.running(id).spec.name, 'runs no commands');
  }

  async guestFileRead(id: string): Promise<Buffer> {
    await this.#enter('guestFileRead');
    throw notInSim(this.#sim.running(id).spec.name, 'has no files to read');
  }

  async backupVm(
    id: string,
    req: BackupVmRequest,
    report: (r: BackupVmReport) => void,
    signal: AbortSignal,
  ): Promise<BackupVmResult> {
    await this.#enter('backupVm');
    return this.#contents.backup(id, backupViewOf(this.#sim, id), req, report, signal);
  }

  /** Real bytes on the wire: the sim's pattern disks through the same sender as QEMU's. */
  async replicateVm(
    id: string,
    req: ReplicateVmRequest,
    link: ReplicaLink,
    report: (r: ReplicateVmReport) => void,
    signal: AbortSignal,
  ): Promise<ReplicateVmResult> {
    await this.#enter('replicateVm');
    return this.#contents.withView(id, backupViewOf(this.#sim, id), replicationView(req), (view) =>
      sendReplica(view, req, link, report, signal),
    );
  }

  async prepareLiveRestore(id: string, req: LiveRestoreRequest): Promise<void> {
    await this.#enter('prepareLiveRestore');
    await this.#liveRestores.prepare(id, req);
  }

  async streamLiveRestore(
    id: string,
    indexes: readonly number[],
    _bytesPerS: number,
    progress: (p: TransferProgress) => void,
  ): Promise<number> {
    await this.#enter('streamLiveRestore');
    this.#sim.running(id);
    return this.#liveRestores.stream(id, indexes, progress);
  }

  // --- migration --------------------------------------------------------------------------------

  async prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    await this.#enter('prepareIncoming');
    return prepareIncoming(this.#sim, this.#link, req);
  }

  async finishIncoming(id: string): Promise<FinishIncomingResult> {
    await this.#enter('finishIncoming');
    return finishIncoming(this.#sim, id);
  }

  async abortIncoming(id: string): Promise<void> {
    await this.#enter('abortIncoming');
    return abortIncoming(this.#sim, id);
  }

  async migrate(
    id: string,
    req: MigrateRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationReport & { type: 'done' }> {
    await this.#enter('migrate');
    return migrateOut(this.#sim, this.#link, id, req, progress, signal);
  }

  async releaseMigrated(id: string): Promise<void> {
    await this.#enter('releaseMigrated');
    return releaseMigrated(this.#sim, id);
  }

  async moveDisk(
    id: string,
    req: MoveDiskRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#enter('moveDisk');
    return moveDisk(this.#sim, this.#link, id, req, progress, signal);
  }

  async close(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    // The VMs stay, as real ones outlive their agent; only the clocks inside the guests stop.
    for (const vm of this.#sim.vms.values()) {
      this.#sim.clearTimer(vm);
      vm.migration?.abort();
    }
    this.faults.clear(new TernError('unavailable', `the agent of ${this.hostname} is shutting down`));
  }

  // --- fault injection and simulation knobs ----------------------------------------------------

  /** The VM's process dies: reported crashed, as when QEMU ends unasked (guest-faults.ts). */
  crash(id: string, reason = 'QEMU ended without being asked to'): void {
    guestFaults.crash(this.#sim, id, reason);
  }

  /**
   * The guest writes `length` bytes at `offset` of its disk `index`: new contents there (a
   * pattern of the VM, the disk and the write count), marked in the disk's dirty bitmaps.
   */
  writeDisk(id: string, index: number, offset: number, length: number): void {
    const disk = this.#sim.running(id).spec.disks[index];
    if (!disk) throw new TernError('not_found', `VM ${id} has no disk ${index}`);
    this.#contents.write(disk.volume, offset, length);
  }

  /** The names of a disk's dirty bitmaps of `prefix` (what tests look at). */
  dirtyBitmaps(volume: VolumeRef, prefix: string): string[] {
    return this.#contents.bitmaps(volume, prefix);
  }

  /** A disk of the VM cannot grow: paused as QEMU pauses it. */
  storageFull(id: string, disk = 'disk0'): void {
    guestFaults.storageFull(this.#sim, id, disk);
  }

  /** The host drops off the network (its agent no longer answers) or comes back. */
  setReachable(reachable: boolean): void {
    this.faults.setReachable(reachable);
  }

  /**
   * The host loses (false) or regains (true) its path to the shared storage: its lease renewals
   * and shared-pool operations fail; the VMs keep running, as guests with their disks on a lost
   * mount do until the fence. The network stays.
   */
  setStorageReachable(reachable: boolean): void {
    this.faults.setStorageReachable(reachable);
  }

  setDirtyRate(id: string, mibPerS: number): void {
    guestFaults.setDirtyRate(this.#sim, id, mibPerS);
  }

  setGuestHung(id: string, hung: boolean): void {
    guestFaults.setGuestHung(this.#sim, id, hung);
  }

  setGuestPowerOffFails(id: string, message: string | null): void {
    guestFaults.setGuestPowerOffFails(this.#sim, id, message);
  }

  /**
   * The host loses power: every VM is gone at once, the agent is unreachable, and (in a sim
   * cluster, which follows `faults.power`) the agent stops: no heartbeat, no lease renewal.
   * After `powerOn` the agent starts again and finds the VMs that ran crashed, as after a reboot.
   */
  powerOff(): void {
    if (this.#sim.poweredOff) return;
    this.setReachable(false);
    this.#sim.poweredOff = true;
    this.faults.power.emit('power', false);
    this.#sim.loseAll();
  }

  powerOn(): void {
    if (!this.#sim.poweredOff) return;
    this.#sim.poweredOff = false;
    this.#sim.findLost();
    this.setReachable(true);
    this.faults.power.emit('power', true);
  }

  get poweredOff(): boolean {
    return this.#sim.poweredOff;
  }

  /** Memory (MiB) held by VMs that have a process: running, paused, incoming, migrated away. */
  memoryInUseMiB(): number {
    return this.#sim.memoryInUseMiB();
  }

  // --- internals --------------------------------------------------------------------------------

  async #enter(op: SimOperation): Promise<void> {
    if (this.#sim.poweredOff) throw new TernError('unavailable', `host ${this.hostname} is powered off`);
    await this.faults.enter(op);
  }
}

/** The simulated guest's answer to what only a real guest can do. */
function notInSim(vm: string, what: string): TernError {
  return new TernError(
    'conflict',
    `the simulated guest of VM ${vm} ${what}: guest commands and file reads are not supported by the sim driver`,
  );
}
