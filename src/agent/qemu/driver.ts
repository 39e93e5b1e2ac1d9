/** The real hypervisor driver: one detached QEMU process per VM. */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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
import type { HostFacts } from '../../wire/host.ts';
import { type DiskSpec, diskSlot, type VmSpec, type VolumeRef, withoutDisk } from '../../wire/vm.ts';
import type { DriverEvents, HypervisorDriver } from '../driver.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { qcow2Problem } from '../storage/qcow2-layout.ts';
import { createVolume, deleteVolume, poolUsage, volumeInfo } from '../storage/volumes.ts';
import { type AcceleratorChoice, detectAccelerator, readCpuFacts } from './accelerator.ts';
import { diskDevice, diskNodes, type ResolvedVolumes } from './command-line.ts';
import { moveDiskRunning } from './disk-move.ts';
import { type MigrationDone, migrateOut, recoverInterrupted } from './migration.ts';
import {
  type ExportedDrive,
  type IncomingRecord,
  IncomingRecords,
  incomingHold,
  listenIncoming,
  resumeIncoming,
} from './migration-incoming.ts';
import { tailFile, vmPaths } from './process-files.ts';
import { deleteSnapshotRunning, snapshotRunning } from './snapshots.ts';
import { VmProcess } from './vm-process.ts';

const run = promisify(execFile);

/**
 * A damaged qcow2 disk (cut short, or marked corrupt by QEMU) is refused before QEMU runs the
 * guest into I/O errors on it while the VM reads as running. The check is cheap (qcow2-layout.ts).
 */
async function checkDisks(spec: VmSpec, volumes: ResolvedVolumes): Promise<void> {
  for (const [i, disk] of spec.disks.entries()) {
    if (disk.format !== 'qcow2') continue;
    const problem = await qcow2Problem(volumes.disks[i]).catch(
      (err: Error) => `it cannot be read: ${err.message}`,
    );
    if (problem) {
      throw new TernError(
        'storage_error',
        `disk ${i} (${disk.volume.pool}:${disk.volume.path}) of VM ${spec.name} is damaged: ${problem}. Tern does not start a VM on a damaged disk: repair it (qemu-img check -r all) or restore it from a backup`,
      );
    }
  }
}

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
  readonly #opts: QemuDriverOptions;
  readonly #binary: string;
  readonly #accel: AcceleratorChoice;
  readonly #vms = new Map<string, VmProcess>();
  /**
   * VMs this host stopped on purpose, remembered until they start again or are forgotten,
   * so a manager that was away when they stopped learns they stopped and did not vanish.
   */
  readonly #stopped = new Map<string, AgentVm>();
  /** Starts in flight, so two concurrent runs of one VM cannot launch two QEMUs. */
  readonly #starting = new Map<string, Promise<AgentVm>>();
  readonly #incoming: IncomingRecords;
  /** VMs with a migration, disk move or incoming step in flight: one at a time each. */
  readonly #busy = new Set<string>();
  /** When finished incoming VMs resumed, for a repeated finish. */
  readonly #resumed = new Map<string, number>();

  constructor(opts: QemuDriverOptions) {
    this.#opts = opts;
    this.#binary = opts.binary ?? 'qemu-system-x86_64';
    this.#accel = opts.accelerator ?? detectAccelerator();
    this.#incoming = new IncomingRecords(opts.stateDir);
  }

  #hooks() {
    return {
      log: this.#opts.log,
      heartbeatMs: this.#opts.heartbeatMs ?? 10_000,
      changed: (vm: AgentVm) => this.events.emit('vm', vm),
      stopped: (vm: AgentVm) => {
        this.#vms.delete(vm.id);
        this.#rememberStopped(vm);
      },
    };
  }

  #tombstone(id: string): string {
    return path.join(this.#opts.stateDir, 'stopped', `${id}.json`);
  }

  #rememberStopped(vm: AgentVm): void {
    this.#stopped.set(vm.id, vm);
    fs.mkdirSync(path.dirname(this.#tombstone(vm.id)), { recursive: true });
    fs.writeFileSync(this.#tombstone(vm.id), JSON.stringify(vm));
  }

  #dropStopped(id: string): void {
    this.#stopped.delete(id);
    fs.rmSync(this.#tombstone(id), { force: true });
  }

  async init(): Promise<void> {
    const runRoot = path.join(this.#opts.stateDir, 'run');
    fs.mkdirSync(runRoot, { recursive: true, mode: 0o700 });
    const stoppedRoot = path.join(this.#opts.stateDir, 'stopped');
    fs.mkdirSync(stoppedRoot, { recursive: true });
    for (const file of fs.readdirSync(stoppedRoot)) {
      try {
        const vm = JSON.parse(fs.readFileSync(path.join(stoppedRoot, file), 'utf8')) as AgentVm;
        this.#stopped.set(vm.id, vm);
      } catch {
        fs.rmSync(path.join(stoppedRoot, file), { force: true });
      }
    }
    this.#incoming.load();
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
  }

  async facts(): Promise<HostFacts> {
    const cpu = readCpuFacts();
    let qemuVersion = 'missing';
    try {
      qemuVersion = (await run(this.#binary, ['--version'])).stdout
        .split('\n')[0]
        .replace(/^QEMU emulator version /, '');
    } catch {
      // Reported as missing; `tern doctor` explains how to install it.
    }
    return {
      hostname: os.hostname(),
      driver: 'qemu',
      accelerator: this.#accel.accelerator,
      acceleratorReason: this.#accel.reason,
      cpuModel: cpu.model,
      cpuVendor: cpu.vendor,
      cpuFlags: cpu.flags.slice(0, 1024),
      cores: cpu.cores,
      memoryMiB: Math.floor(os.totalmem() / 1024 / 1024),
      pools: await Promise.all(
        Object.entries(this.#opts.pools).map(async ([name, dir]) => ({
          name,
          path: dir,
          shared: this.#opts.sharedPools?.includes(name) ?? false,
          ...(await poolUsage(dir)),
        })),
      ),
      versions: { qemu: qemuVersion, node: process.versions.node },
    };
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
    const volumes = this.#volumesOf(spec);
    await checkDisks(spec, volumes);
    this.#dropStopped(spec.id);
    if (existing) {
      existing.discard();
      this.#vms.delete(spec.id);
    }
    const vm = await VmProcess.launch(
      this.#binary,
      spec,
      volumes,
      vmPaths(this.#opts.stateDir, spec.id),
      this.#accel,
      this.#hooks(),
    );
    this.#vms.set(vm.id, vm);
    this.#opts.log.info({ vm: vm.id, name: spec.name }, 'started VM');
    return vm.snapshot();
  }

  #volumesOf(spec: VmSpec): ResolvedVolumes {
    const pools = this.#opts.pools;
    const volumes = {
      disks: spec.disks.map((d) => resolveVolume(pools, d.volume)),
      seed: spec.seed ? resolveVolume(pools, spec.seed) : undefined,
      kernel: spec.boot ? resolveVolume(pools, spec.boot.kernel) : undefined,
      initrd: spec.boot?.initrd ? resolveVolume(pools, spec.boot.initrd) : undefined,
    };
    for (const file of [...volumes.disks, volumes.seed, volumes.kernel, volumes.initrd]) {
      if (file && !fs.existsSync(file)) throw new TernError('storage_error', `volume ${file} does not exist`);
    }
    return volumes;
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
    this.#dropStopped(id);
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
    await vm.monitor('block_resize', {
      'node-name': vm.blockNodes(diskSlot(disk, index)).format,
      size: sizeBytes,
    });
  }

  /** Hot-plugs a disk into a running VM at a free slot. */
  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    const vm = this.#running(id);
    const slot = disk.slot ?? 0;
    if (vm.spec.disks.some((d, i) => diskSlot(d, i) === slot)) {
      throw new TernError('conflict', `slot ${slot} of ${vm.spec.name} holds a disk`);
    }
    const file = resolveVolume(this.#opts.pools, disk.volume);
    if (!fs.existsSync(file))
      throw new TernError('storage_error', `volume ${disk.volume.path} does not exist`);
    const n = diskNodes(slot);
    const ro = disk.readonly;
    await vm.monitor('blockdev-add', {
      driver: 'file',
      filename: file,
      'node-name': n.file,
      'read-only': ro,
    });
    try {
      await vm.monitor('blockdev-add', {
        driver: disk.format,
        file: n.file,
        'node-name': n.format,
        'read-only': ro,
      });
      try {
        await vm.monitor('device_add', diskDevice(slot, vm.spec.machine === 'q35'));
      } catch (err) {
        await vm.monitor('blockdev-del', { 'node-name': n.format }).catch(() => {});
        throw err;
      }
    } catch (err) {
      await vm.monitor('blockdev-del', { 'node-name': n.file }).catch(() => {});
      throw err;
    }
    vm.updateSpec({ ...vm.spec, disks: [...vm.spec.disks, { ...disk, slot }] });
    await vm.refreshGuestFacts().catch(() => {});
  }

  /** Unplugs a disk from a running VM; the guest has to let go of it (PCIe hot-unplug). */
  async detachDisk(id: string, index: number): Promise<void> {
    const vm = this.#running(id);
    const disk = vm.spec.disks[index];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
    const n = vm.blockNodes(diskSlot(disk, index));
    const deleted = vm.event('DEVICE_DELETED', 60_000, (d) => d.device === n.device);
    deleted.catch(() => {});
    await vm.monitor('device_del', { id: n.device });
    try {
      await deleted;
    } catch {
      throw new TernError(
        'timeout',
        `the guest of ${vm.spec.name} did not release disk ${index} within 60 s`,
      );
    }
    await vm.monitor('blockdev-del', { 'node-name': n.format });
    await vm.monitor('blockdev-del', { 'node-name': n.file });
    vm.setBlockNodes(diskSlot(disk, index), null);
    // The other disks keep their slots: QEMU names their nodes and devices after them.
    vm.updateSpec({ ...vm.spec, disks: withoutDisk(vm.spec, index) });
    await vm.refreshGuestFacts().catch(() => {});
  }

  snapshot(id: string, name: string) {
    return snapshotRunning(this.#running(id), name, this.#opts.log);
  }

  deleteSnapshot(id: string, name: string): Promise<void> {
    return deleteSnapshotRunning(this.#running(id), name);
  }

  /** Runs `fn` as the only migration step, disk move or incoming step of VM `id` right now. */
  async #exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    if (this.#busy.has(id)) throw new TernError('conflict', `VM ${id} is being migrated or moved already`);
    this.#busy.add(id);
    try {
      return await fn();
    } finally {
      this.#busy.delete(id);
    }
  }

  prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    const { spec } = req;
    return this.#exclusive(spec.id, async () => {
      // A crashed copy left here (the host failed and the VM was restarted elsewhere) is only a
      // record: the VM coming back replaces it.
      if (this.#vms.get(spec.id)?.state === 'crashed') await this.forget(spec.id);
      if (this.#vms.has(spec.id) || this.#starting.has(spec.id) || this.#incoming.get(spec.id)) {
        throw new TernError('conflict', `VM ${spec.name} is on this host already`);
      }
      if (req.mode === 'quick' && (req.storage !== 'shared' || !req.stateFile)) {
        throw new TernError('invalid_request', 'a quick migration needs shared storage and a stateFile');
      }
      this.#dropStopped(spec.id);
      const rec: IncomingRecord = {
        id: spec.id,
        mode: req.mode,
        storage: req.storage,
        created: [],
        stateFile: req.stateFile ?? null,
        exports: [],
        copies: [],
      };
      this.#incoming.save(rec);
      try {
        for (const c of req.create ?? []) {
          await createVolume(this.#opts.pools, {
            volume: c.volume,
            format: c.format,
            sizeBytes: c.sizeBytes,
          });
          rec.created.push(c.volume);
          this.#incoming.save(rec);
        }
        const volumes = this.#volumesOf(spec);
        const vm = await VmProcess.launch(
          this.#binary,
          spec,
          volumes,
          vmPaths(this.#opts.stateDir, spec.id),
          this.#accel,
          this.#hooks(),
          { incoming: true },
        );
        vm.hold(incomingHold);
        this.#vms.set(vm.id, vm);
        const made = (ref: VolumeRef) => rec.created.some((c) => c.pool === ref.pool && c.path === ref.path);
        // Filled over NBD: exactly the drives whose volumes were made empty for this migration.
        const drives: ExportedDrive[] = spec.disks.flatMap((d, i) =>
          made(d.volume)
            ? [
                {
                  node: diskNodes(diskSlot(d, i)).format,
                  file: volumes.disks[i],
                  format: d.format,
                  readonly: d.readonly,
                },
              ]
            : [],
        );
        if (spec.seed && volumes.seed && made(spec.seed))
          drives.push({ node: 'seed', file: volumes.seed, format: 'raw', readonly: true });
        const stateFile = req.stateFile ? resolveVolume(this.#opts.pools, req.stateFile) : null;
        const answer = await listenIncoming(vm, req, rec, stateFile, drives);
        this.#incoming.save(rec);
        this.#opts.log.info(
          { vm: spec.id, mode: req.mode, storage: req.storage },
          'waiting for an incoming VM',
        );
        return answer;
      } catch (err) {
        await this.#abortIncoming(spec.id).catch((e) =>
          this.#opts.log.error({ vm: spec.id, err: e }, 'cleaning up a failed incoming migration failed'),
        );
        throw err;
      }
    });
  }

  finishIncoming(id: string): Promise<FinishIncomingResult> {
    return this.#exclusive(id, async () => {
      const rec = this.#incoming.get(id);
      const vm = this.#vms.get(id);
      if (!rec) {
        const resumedAt = this.#resumed.get(id);
        if (vm && resumedAt !== undefined) return { vm: vm.snapshot(), resumedAt };
        throw new TernError('not_found', `no incoming migration of VM ${id} on this host`);
      }
      if (!vm) throw new TernError('hypervisor_error', `the incoming VM ${id} is not running on this host`);
      const { resumedAt } = await resumeIncoming(vm, rec, 10 * 60_000);
      if (rec.stateFile) deleteVolume(this.#opts.pools, rec.stateFile);
      this.#incoming.drop(id);
      this.#resumed.set(id, resumedAt);
      this.#opts.log.info({ vm: id }, 'incoming VM runs');
      return { vm: vm.snapshot(), resumedAt };
    });
  }

  abortIncoming(id: string): Promise<void> {
    return this.#exclusive(id, () => this.#abortIncoming(id));
  }

  async #abortIncoming(id: string): Promise<void> {
    const rec = this.#incoming.get(id);
    const vm = this.#vms.get(id);
    if (!rec) {
      if (vm)
        throw new TernError(
          'conflict',
          `VM ${vm.spec.name} runs on this host; it is not an incoming migration`,
        );
      return;
    }
    if (vm) {
      // Once its guest ran here, this is the only copy of the VM: never end it as an abort.
      if (vm.state === 'running' && !vm.held)
        throw new TernError('conflict', `VM ${vm.spec.name} runs on this host already`);
      await vm.release();
      this.#vms.delete(id);
      this.events.emit('gone', id);
    }
    for (const ref of rec.created) deleteVolume(this.#opts.pools, ref);
    this.#incoming.drop(id);
    this.#opts.log.info({ vm: id }, 'aborted an incoming migration');
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
        this.#dropStopped(id);
        return;
      }
      // Only a copy whose state went elsewhere may be ended here: QEMU's word, asked afresh.
      const { status } = await vm.monitor<{ status: string }>('query-status');
      if (status !== 'postmigrate') {
        throw new TernError(
          'conflict',
          `VM ${vm.spec.name} has not migrated away (it is ${status}); not ending it`,
        );
      }
      await vm.release();
      this.#vms.delete(id);
      this.#dropStopped(id);
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
    return this.#exclusive(id, async () => {
      const disk = vm.spec.disks[req.index];
      if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${req.index}`);
      if (disk.readonly)
        throw new TernError('invalid_request', `disk ${req.index} is read-only; copy its volume`);
      if (vm.state !== 'running') throw new TernError('conflict', `VM ${vm.spec.name} is ${vm.state}`);
      const pools = this.#opts.pools;
      const info = await volumeInfo(pools, disk.volume);
      await createVolume(pools, { volume: req.target, format: disk.format, sizeBytes: info.virtualBytes });
      try {
        await moveDiskRunning(
          vm,
          req.index,
          { file: resolveVolume(pools, req.target), format: disk.format },
          progress,
          signal,
        );
      } catch (err) {
        deleteVolume(pools, req.target);
        throw err;
      }
      const disks = vm.spec.disks.map((d, i) =>
        i === req.index ? { ...d, volume: req.target, slot: diskSlot(d, i) } : d,
      );
      vm.updateSpec({ ...vm.spec, disks });
      this.#opts.log.info({ vm: id, index: req.index, to: req.target }, 'moved a disk');
    });
  }

  async consoleTail(id: string, maxBytes: number): Promise<string> {
    return tailFile(vmPaths(this.#opts.stateDir, id).consoleLog, maxBytes);
  }

  async close(): Promise<void> {
    for (const vm of this.#vms.values()) vm.detach();
    this.#vms.clear();
  }
}
