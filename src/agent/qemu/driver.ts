/** The real hypervisor driver: one detached QEMU process per VM. */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
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
import type { GuestExecRequest, GuestExecResult } from '../../wire/guest-command.ts';
import type { HostFacts } from '../../wire/host.ts';
import type { PortRules } from '../../wire/network.ts';
import type { ReplicateVmReport, ReplicateVmRequest, ReplicateVmResult } from '../../wire/replication.ts';
import { type DiskSpec, diskSlot, type NicSpec, type VmSpec, type VolumeRef } from '../../wire/vm.ts';
import { backupView, openForBackup, writeBackup } from '../backup/backup-writer.ts';
import { LiveRestores } from '../backup/live-restore.ts';
import { withStoppedView } from '../backup/stopped-view.ts';
import type { ViewLog, ViewRequest, VmView } from '../backup/view.ts';
import type { DriverEvents, HypervisorDriver } from '../driver.ts';
import { KernelNetworks } from '../network/kernel-networks.ts';
import type { ReplicaLink } from '../replication/replica-link.ts';
import { replicationView, sendReplica } from '../replication/sender.ts';
import type { Pools } from '../storage/pools.ts';
import { type AcceleratorChoice, detectAccelerator } from './accelerator.ts';
import { changeCdromRunning } from './cdrom.ts';
import type { LaunchOptions, ResolvedVolumes } from './command-line.ts';
import { moveDisk } from './disk-move.ts';
import { streamDisks } from './disk-stream.ts';
import { guestExec, guestFileRead } from './guest-exec.ts';
import { hostFacts } from './host-facts.ts';
import { attachDiskRunning, detachDiskRunning } from './hotplug.ts';
import { checkDisks, launchVolumes } from './launch-volumes.ts';
import { type MigrationDone, migrateOut, recoverInterrupted, releaseMigratedVm } from './migration.ts';
import {
  abortIncoming,
  finishIncoming,
  type IncomingHost,
  IncomingRecords,
  incomingHold,
  prepareIncoming,
} from './migration-incoming.ts';
import { linkNicRunning, plugNicRunning, setNicRulesRunning, unplugNicRunning } from './nic-hotplug.ts';
import { tailFile, vmPaths } from './process-files.ts';
import { blockResize } from './qmp-commands.ts';
import { withRunningView } from './running-view.ts';
import { deleteSnapshotRunning, snapshotRunning } from './snapshots.ts';
import { StoppedVms } from './stopped-vms.ts';
import { plugPorts, unplugPorts, unplugVm } from './vm-ports.ts';
import { VmProcess } from './vm-process.ts';

export interface QemuDriverOptions {
  stateDir: string;
  pools: Pools;
  sharedPools?: string[];
  log: Logger;
  binary?: string;
  heartbeatMs?: number;
  accelerator?: AcceleratorChoice;
}

export class QemuDriver implements HypervisorDriver {
  readonly events = new EventEmitter<DriverEvents>();
  readonly networks: KernelNetworks;
  readonly #opts: QemuDriverOptions;
  readonly #binary: string;
  readonly #accel: AcceleratorChoice;
  readonly #vms = new Map<string, VmProcess>();
  /** VMs this host stopped on purpose (stopped-vms.ts). */
  readonly #stopped: StoppedVms;
  /** Starts in flight, so two concurrent runs of one VM cannot launch two QEMUs. */
  readonly #starting = new Map<string, Promise<AgentVm>>();
  readonly #incoming: IncomingRecords;
  /** VMs with a migration, disk move or incoming step in flight: one at a time each. */
  readonly #busy = new Set<string>();
  /** When finished incoming VMs resumed, for a repeated finish. */
  readonly #resumed = new Map<string, number>();
  /** Backups served to VMs restored live, until their disks are streamed in. */
  readonly #liveRestores: LiveRestores;

  constructor(opts: QemuDriverOptions) {
    this.#opts = opts;
    this.#binary = opts.binary ?? 'qemu-system-x86_64';
    this.#accel = opts.accelerator ?? detectAccelerator();
    this.#incoming = new IncomingRecords(opts.stateDir);
    this.#stopped = new StoppedVms(opts.stateDir);
    this.networks = new KernelNetworks({ stateDir: opts.stateDir, log: opts.log });
    this.#liveRestores = new LiveRestores(opts.stateDir, opts.pools, opts.log);
  }

  #hooks() {
    return {
      log: this.#opts.log,
      heartbeatMs: this.#opts.heartbeatMs ?? 10_000,
      changed: (vm: AgentVm) => this.events.emit('vm', vm),
      stopped: (vm: AgentVm) => {
        this.#vms.delete(vm.id);
        this.#stopped.remember(vm);
      },
      ended: (id: string) => void unplugVm(this.networks, id, this.#opts.log),
    };
  }

  /**
   * Launches a VM's QEMU with its ports plugged first; a launch that fails unplugs them. No
   * QEMU of the VM runs here at this point, so ports left of an earlier one go first.
   */
  async #launch(spec: VmSpec, volumes: ResolvedVolumes, launch: LaunchOptions = {}): Promise<VmProcess> {
    await unplugVm(this.networks, spec.id, this.#opts.log);
    const taps = await plugPorts(this.networks, spec);
    try {
      return await VmProcess.launch(
        this.#binary,
        spec,
        volumes,
        vmPaths(this.#opts.stateDir, spec.id),
        this.#accel,
        this.#hooks(),
        { ...launch, taps },
      );
    } catch (err) {
      await unplugPorts(this.networks, taps);
      throw err;
    }
  }

  /** Ports whose VM has no QEMU here any more (it ended while no agent ran) are removed. */
  async #unplugOrphanPorts(): Promise<void> {
    for (const vm of new Set(this.networks.ports().map((p) => p.vm))) {
      if (this.#vms.get(vm)?.snapshot().pid == null) await unplugVm(this.networks, vm, this.#opts.log);
    }
  }

  async init(): Promise<void> {
    const runRoot = path.join(this.#opts.stateDir, 'run');
    fs.mkdirSync(runRoot, { recursive: true, mode: 0o700 });
    this.#stopped.load();
    this.#incoming.load();
    // Networks first: a reattached VM's ports are on their bridges.
    await this.networks.reconcile();
    for (const id of fs.readdirSync(runRoot)) {
      const vm = await VmProcess.attach(vmPaths(this.#opts.stateDir, id), this.#hooks());
      if (vm) {
        this.#vms.set(vm.id, vm);
        this.#opts.log.info({ vm: vm.id, name: vm.spec.name, state: vm.state }, 'reattached VM');
        if (this.#incoming.get(vm.id)) vm.hold(incomingHold);
        else
          await recoverInterrupted(vm, this.#opts.log).catch((err) =>
            this.#opts.log.error({ vm: vm.id, err }, 'cleaning up after an interrupted migration failed'),
          );
      }
    }
    await this.#unplugOrphanPorts();
  }

  facts(): Promise<HostFacts> {
    return hostFacts({
      binary: this.#binary,
      accelerator: this.#accel,
      pools: this.#opts.pools,
      sharedPools: this.#opts.sharedPools ?? [],
      networks: this.networks,
    });
  }

  list(): AgentVm[] {
    return [...[...this.#vms.values()].map((vm) => vm.snapshot()), ...this.#stopped.values()];
  }

  get(id: string): AgentVm | undefined {
    return this.#vms.get(id)?.snapshot() ?? this.#stopped.get(id);
  }

  spec(id: string): VmSpec | undefined {
    return this.#vms.get(id)?.spec;
  }

  run(spec: VmSpec): Promise<AgentVm> {
    const inFlight = this.#starting.get(spec.id);
    if (inFlight) return inFlight;
    const p = this.#run(spec).finally(() => this.#starting.delete(spec.id));
    this.#starting.set(spec.id, p);
    return p;
  }

  async #run(spec: VmSpec): Promise<AgentVm> {
    let existing = this.#vms.get(spec.id);
    // A guest that powered off reads as stopped while its QEMU is still being ended: a start
    // waits for that, then starts it afresh (instead of answering with the QEMU going away).
    if (existing?.state === 'shutdown') {
      await existing.ended();
      existing = this.#vms.get(spec.id);
    }
    // Its QEMU runs, perhaps with a live guest: a second one would share its disks.
    if (existing?.state === 'unreachable')
      throw new TernError(
        'conflict',
        `VM ${spec.name} is unreachable (${existing.snapshot().reason}); force it off before starting it`,
      );
    if (existing && existing.state !== 'crashed') return existing.snapshot();
    const volumes = launchVolumes(spec, this.#opts.pools);
    await checkDisks(spec, volumes);
    this.#stopped.drop(spec.id);
    if (existing) {
      existing.discard();
      this.#vms.delete(spec.id);
    }
    const vm = await this.#launch(spec, volumes);
    this.#vms.set(vm.id, vm);
    this.#opts.log.info({ vm: vm.id, name: spec.name }, 'started VM');
    return vm.snapshot();
  }

  async act(id: string, action: VmAction): Promise<AgentVm> {
    const vm = this.#vms.get(id);
    if (!vm) {
      const stopped = this.#stopped.get(id);
      // Forcing off what is already off is done, not an error: a retried stop must succeed.
      if (stopped && action === 'kill') return stopped;
      throw new TernError(stopped ? 'conflict' : 'not_found', `VM ${id} is not running on this host`);
    }
    const stoppedSnapshot = () => ({ ...vm.snapshot(), state: 'stopped' as const });
    if (action === 'kill' && vm.state === 'crashed') {
      await this.forget(id);
      return stoppedSnapshot();
    }
    await vm.act(action);
    return this.#vms.has(id) ? vm.snapshot() : (this.#stopped.get(id) ?? stoppedSnapshot());
  }

  async forget(id: string): Promise<void> {
    this.#stopped.drop(id);
    const vm = this.#vms.get(id);
    if (!vm) return;
    if (vm.state !== 'crashed') throw new TernError('conflict', `VM ${id} is ${vm.state}; stop it first`);
    vm.discard();
    this.#vms.delete(id);
    this.events.emit('gone', id);
  }

  #running(id: string): VmProcess {
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not running on this host`);
    if (vm.state === 'unreachable')
      throw new TernError('conflict', `VM ${vm.spec.name} is unreachable: ${vm.snapshot().reason}`);
    return vm;
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    const vm = this.#running(id);
    const disk = vm.spec.disks[index];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
    await blockResize(vm.monitor, vm.blockNodes(diskSlot(disk, index)).format, sizeBytes);
  }

  /** Hot-plugs a disk into a running VM at a free slot. */
  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    return attachDiskRunning(this.#running(id), disk, this.#opts.pools);
  }

  /** Unplugs a disk from a running VM; the guest has to let go of it (PCIe hot-unplug). */
  async detachDisk(id: string, index: number): Promise<void> {
    return detachDiskRunning(this.#running(id), index);
  }

  plugNic(id: string, nic: NicSpec): Promise<void> {
    return plugNicRunning(this.#running(id), nic, this.networks);
  }

  unplugNic(id: string, mac: string): Promise<void> {
    return unplugNicRunning(this.#running(id), mac, this.networks);
  }

  linkNic(id: string, mac: string, link: 'up' | 'down'): Promise<void> {
    return linkNicRunning(this.#running(id), mac, link);
  }

  setNicRules(id: string, mac: string, rules: PortRules | null): Promise<void> {
    return setNicRulesRunning(this.#running(id), mac, rules, this.networks);
  }

  /** A VM whose guest can be talked to: running, not paused or on its way out. */
  #guestUp(id: string): VmProcess {
    const vm = this.#running(id);
    if (vm.state !== 'running')
      throw new TernError('conflict', `VM ${vm.spec.name} is ${vm.state}: its guest runs no commands now`);
    return vm;
  }

  guestExec(id: string, req: GuestExecRequest): Promise<GuestExecResult> {
    const vm = this.#guestUp(id);
    return guestExec(vm.guestChannel, vm.spec.name, req);
  }

  guestFileRead(id: string, path: string, maxBytes?: number): Promise<Buffer> {
    const vm = this.#guestUp(id);
    return guestFileRead(vm.guestChannel, vm.spec.name, path, maxBytes);
  }

  changeCdrom(id: string, medium: VolumeRef | null, force: boolean): Promise<void> {
    return changeCdromRunning(this.#running(id), medium, force, this.#opts.pools);
  }

  snapshot(id: string, name: string) {
    return snapshotRunning(this.#running(id), name, this.#opts.log);
  }

  deleteSnapshot(id: string, name: string): Promise<void> {
    return deleteSnapshotRunning(this.#running(id), name);
  }

  /** Runs `fn` as the only migration step, disk move or incoming step of VM `id` right now. */
  async #exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.#busy.has(id))
      throw new TernError('conflict', `VM ${id} is being migrated, moved or backed up already`);
    this.#busy.add(id);
    try {
      return await fn();
    } finally {
      this.#busy.delete(id);
    }
  }

  prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    return this.#exclusive(req.spec.id, () => prepareIncoming(this.#incomingHost(), req));
  }

  finishIncoming(id: string): Promise<FinishIncomingResult> {
    return this.#exclusive(id, () => finishIncoming(this.#incomingHost(), id));
  }

  abortIncoming(id: string): Promise<void> {
    return this.#exclusive(id, () => abortIncoming(this.#incomingHost(), id));
  }

  #incomingHost(): IncomingHost {
    return {
      pools: this.#opts.pools,
      log: this.#opts.log,
      records: this.#incoming,
      resumed: this.#resumed,
      vms: this.#vms,
      starting: (id) => this.#starting.has(id),
      forget: (id) => this.forget(id),
      dropStopped: (id) => this.#stopped.drop(id),
      volumesOf: (spec) => launchVolumes(spec, this.#opts.pools),
      launch: (spec, volumes) => this.#launch(spec, volumes, { incoming: true }),
      gone: (id) => this.events.emit('gone', id),
    };
  }

  async migrate(
    id: string,
    req: MigrateRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationDone> {
    const vm = this.#running(id);
    return this.#exclusive(id, () =>
      migrateOut(
        vm,
        req,
        { pools: this.#opts.pools, sharedPools: this.#opts.sharedPools ?? [], log: this.#opts.log },
        progress,
        signal,
      ),
    );
  }

  releaseMigrated(id: string): Promise<void> {
    return this.#exclusive(id, async () => {
      const vm = this.#vms.get(id);
      if (!vm) {
        this.#stopped.drop(id);
        return;
      }
      await releaseMigratedVm(vm);
      this.#vms.delete(id);
      this.#stopped.drop(id);
      this.events.emit('gone', id);
      this.#opts.log.info({ vm: id }, 'released a VM that migrated away');
    });
  }

  async moveDisk(
    id: string,
    req: MoveDiskRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const vm = this.#running(id);
    return this.#exclusive(id, () => moveDisk(vm, req, this.#opts.pools, this.#opts.log, progress, signal));
  }

  async backupVm(
    id: string,
    req: BackupVmRequest,
    report: (r: BackupVmReport) => void,
    signal: AbortSignal,
  ): Promise<BackupVmResult> {
    return this.#withView(id, backupView(req), report, signal, async () => {
      const ds = await openForBackup(req);
      return (view) => writeBackup(ds, req, view, report, signal);
    });
  }

  async replicateVm(
    id: string,
    req: ReplicateVmRequest,
    link: ReplicaLink,
    report: (r: ReplicateVmReport) => void,
    signal: AbortSignal,
  ): Promise<ReplicateVmResult> {
    return this.#withView(
      id,
      replicationView(req),
      report,
      signal,
      async () => (view) => sendReplica(view, req, link, report, signal),
    );
  }

  /**
   * A view of the VM for a reader (a backup, a replication cycle), the reader made ready first
   * (`prepare`: what may fail before any bitmap is touched). A VM whose QEMU runs is read
   * through a copy-before-write view (running-view.ts), one at a time with its migrations and
   * disk moves; any other from its images (../backup/stopped-view.ts).
   */
  #withView<T>(
    id: string,
    req: ViewRequest,
    report: ViewLog,
    signal: AbortSignal,
    prepare: () => Promise<(view: VmView) => Promise<T>>,
  ): Promise<T> {
    if (this.#starting.has(id)) throw new TernError('conflict', `VM ${id} is starting`);
    const vm = this.#vms.get(id);
    if (vm && vm.state !== 'crashed' && vm.state !== 'stopped') {
      const live = this.#running(id);
      return this.#exclusive(id, async () =>
        withRunningView(live, req, report, this.#opts.log, await prepare()),
      );
    }
    return this.#exclusive(id, async () => withStoppedView(this.#opts.pools, req, signal, await prepare()));
  }

  async prepareLiveRestore(id: string, req: LiveRestoreRequest): Promise<void> {
    await this.#liveRestores.prepare(id, req);
  }

  async streamLiveRestore(
    id: string,
    indexes: readonly number[],
    bytesPerS: number,
    progress: (p: TransferProgress) => void,
    signal: AbortSignal,
  ): Promise<number> {
    const vm = this.#running(id);
    const streamed = await this.#exclusive(id, () => streamDisks(vm, indexes, bytesPerS, progress, signal));
    await this.#liveRestores.finish(id);
    return streamed;
  }

  async consoleTail(id: string, maxBytes: number): Promise<string> {
    return tailFile(vmPaths(this.#opts.stateDir, id).consoleLog, maxBytes);
  }

  async close(): Promise<void> {
    await this.networks.close();
    await this.#liveRestores.close();
    for (const vm of this.#vms.values()) vm.detach();
    this.#vms.clear();
  }
}
