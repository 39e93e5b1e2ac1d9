/** The real hypervisor driver: one detached QEMU process per VM. */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentVm, VmAction } from '../../wire/agent.ts';
import type { HostFacts } from '../../wire/host.ts';
import { type DiskSpec, diskSlot, type VmSpec, withoutDisk } from '../../wire/vm.ts';
import type { DriverEvents, HypervisorDriver } from '../driver.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { poolUsage } from '../storage/volumes.ts';
import { type AcceleratorChoice, detectAccelerator, readCpuFacts } from './accelerator.ts';
import { diskDevice, diskNodes } from './command-line.ts';
import { deleteSnapshotRunning, snapshotRunning } from './snapshots.ts';
import { tailFile, VmProcess, vmPaths } from './vm-process.ts';

const run = promisify(execFile);

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

  constructor(opts: QemuDriverOptions) {
    this.#opts = opts;
    this.#binary = opts.binary ?? 'qemu-system-x86_64';
    this.#accel = opts.accelerator ?? detectAccelerator();
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
    for (const id of fs.readdirSync(runRoot)) {
      const vm = await VmProcess.attach(vmPaths(this.#opts.stateDir, id), this.#hooks());
      if (vm) {
        this.#vms.set(vm.id, vm);
        this.#opts.log.info({ vm: vm.id, name: vm.spec.name, state: vm.state }, 'reattached VM');
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
      pools: Object.entries(this.#opts.pools).map(([name, dir]) => ({
        name,
        path: dir,
        shared: this.#opts.sharedPools?.includes(name) ?? false,
        ...poolUsage(dir),
      })),
      versions: { qemu: qemuVersion, node: process.versions.node },
    };
  }

  list(): AgentVm[] {
    return [...[...this.#vms.values()].map((vm) => vm.snapshot()), ...this.#stopped.values()];
  }

  get(id: string): AgentVm | undefined {
    return this.#vms.get(id)?.snapshot() ?? this.#stopped.get(id);
  }

  run(spec: VmSpec): Promise<AgentVm> {
    const inFlight = this.#starting.get(spec.id);
    if (inFlight) return inFlight;
    const p = this.#run(spec).finally(() => this.#starting.delete(spec.id));
    this.#starting.set(spec.id, p);
    return p;
  }

  async #run(spec: VmSpec): Promise<AgentVm> {
    const existing = this.#vms.get(spec.id);
    if (existing && existing.state !== 'crashed') return existing.snapshot();
    this.#dropStopped(spec.id);
    if (existing) {
      existing.discard();
      this.#vms.delete(spec.id);
    }
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
    return vm;
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    const vm = this.#running(id);
    const disk = vm.spec.disks[index];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
    await vm.monitor('block_resize', {
      'node-name': diskNodes(diskSlot(disk, index)).format,
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
    const n = diskNodes(diskSlot(disk, index));
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

  async consoleTail(id: string, maxBytes: number): Promise<string> {
    return tailFile(vmPaths(this.#opts.stateDir, id).consoleLog, maxBytes);
  }

  async close(): Promise<void> {
    for (const vm of this.#vms.values()) vm.detach();
    this.#vms.clear();
  }
}
