/**
 * The `sim` hypervisor driver: simulated VMs on a simulated host, behind the same interface
 * (and so the same agent protocol) as the QEMU driver, for scale and fault tests of the real
 * manager. VM states, reasons, events, tombstones, memory accounting and live migration follow
 * the real driver; storage stays real files in the host's pools. See README.md for what is
 * simulated and the knobs.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type {
  AgentVm,
  AgentVmState,
  FinishIncomingResult,
  IncomingMigration,
  IncomingMigrationRequest,
  MigrateRequest,
  MigrationReport,
  MoveDiskRequest,
  VmAction,
} from '../../wire/agent.ts';
import type { GuestExecResult } from '../../wire/guest-command.ts';
import type { HostFacts } from '../../wire/host.ts';
import {
  type DiskSpec,
  diskSlot,
  emptyGuestInfo,
  type GuestInfo,
  type VmSpec,
  type VolumeRef,
  withoutDisk,
} from '../../wire/vm.ts';
import type { DriverEvents, HypervisorDriver } from '../driver.ts';
import { diskNodes } from '../qemu/command-line.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { createVolume, deleteVolume, resizeVolume, volumeSnapshot } from '../storage/volumes.ts';
import { SimClock } from './clock.ts';
import { PoolUsage } from './disks.ts';
import { SimFaults, type SimOperation } from './faults.ts';
import { guestFacts } from './guest.ts';
import {
  allocatedBytes,
  type IncomingEntry,
  incoming,
  MigrationRun,
  readStateFile,
  type SourceSide,
  simNbdPort,
} from './migration.ts';

const MiB = 1024 * 1024;

export interface SimCpu {
  vendor: string;
  model: string;
  flags: string[];
}

export const defaultSimCpu: SimCpu = {
  vendor: 'GenuineIntel',
  model: 'Intel Xeon Processor (simulated)',
  flags:
    'fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx pdpe1gb rdtscp lm constant_tsc nopl pni pclmulqdq vmx ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap xsaveopt arat'.split(
      ' ',
    ),
};

export interface SimDriverOptions {
  hostname: string;
  /** Pool name → directory; volumes are real files there (the agent's storage module). */
  pools: Pools;
  sharedPools?: string[];
  cores?: number;
  memoryMiB?: number;
  cpu?: SimCpu;
  /** Size each pool reports (bytes), one figure for all or per pool; 1 TiB by default. */
  poolTotalBytes?: number | Record<string, number>;
  /** Whether the host has UEFI firmware for VMs (true by default). */
  uefi?: boolean;
  /** From start until the guest agent answers (simulated ms). */
  bootDelayMs?: number;
  /** From an ACPI or guest-agent shutdown request until the guest is off (simulated ms). */
  shutdownDelayMs?: number;
  /** Guest agent heartbeat period (simulated ms); 0 turns heartbeats off (large simulations). */
  guestHeartbeatMs?: number;
  /** The host's migration network (MiB/s). */
  networkMiBps?: number;
  /** Local disk throughput for state files and disk moves (MiB/s). */
  diskMiBps?: number;
  /** Memory a new VM dirties per second while it runs; `setDirtyRate` changes it per VM. */
  dirtyMiBps?: number;
  clock?: SimClock;
  log?: Logger;
}

interface SimVm {
  spec: VmSpec;
  state: AgentVmState;
  reason: string | null;
  pid: number | null;
  startedAt: string | null;
  guest: GuestInfo;
  booted: boolean;
  /** 1 at power-on, one more at each reboot or reset, as QEMU's RESET events count them. */
  boots: number;
  dirtyMiBps: number;
  guestHung: boolean;
  /** Its power-off is broken: ACPI is ignored and its guest agent answers shutdowns with this. */
  powerOffFails: string | null;
  /** Boot or shutdown under way in the guest. */
  timer: NodeJS.Timeout | null;
  incoming: { entry: IncomingEntry; stateFile: VolumeRef | null; created: VolumeRef[] } | null;
  /** Source side: the migration under way, to stop it if the VM dies. */
  migration: AbortController | null;
  migratedAway: boolean;
}

/** Beyond Linux's largest pid, so no simulated pid names a real process. */
let nextPid = 5_000_000;
const consoleLimit = 64 * 1024;

export class SimDriver implements HypervisorDriver {
  readonly events = new EventEmitter<DriverEvents>();
  readonly faults = new SimFaults();
  readonly hostname: string;
  readonly clock: SimClock;
  readonly #o: Required<Omit<SimDriverOptions, 'log' | 'clock' | 'poolTotalBytes' | 'sharedPools'>> & {
    sharedPools: string[];
  };
  readonly #totals: Record<string, number>;
  readonly #log: Logger | undefined;
  readonly #vms = new Map<string, SimVm>();
  /** VMs stopped on purpose, until they start again or are forgotten (as the QEMU driver keeps them). */
  readonly #stopped = new Map<string, AgentVm>();
  readonly #consoles = new Map<string, string>();
  readonly #usage = new PoolUsage();
  #heartbeat: NodeJS.Timeout | null = null;
  #poweredOff = false;
  /** VMs that ran when the power went: found crashed when the host comes back. */
  #lost: SimVm[] = [];

  constructor(opts: SimDriverOptions) {
    this.hostname = opts.hostname;
    this.clock = opts.clock ?? new SimClock();
    this.#log = opts.log;
    const bootDelayMs = opts.bootDelayMs ?? 200;
    this.#o = {
      hostname: opts.hostname,
      pools: opts.pools,
      sharedPools: opts.sharedPools ?? [],
      cores: opts.cores ?? 32,
      memoryMiB: opts.memoryMiB ?? 256 * 1024,
      cpu: opts.cpu ?? defaultSimCpu,
      uefi: opts.uefi ?? true,
      bootDelayMs,
      shutdownDelayMs: opts.shutdownDelayMs ?? Math.max(1, bootDelayMs / 2),
      guestHeartbeatMs: opts.guestHeartbeatMs ?? 10_000,
      networkMiBps: opts.networkMiBps ?? 1180,
      diskMiBps: opts.diskMiBps ?? 1000,
      dirtyMiBps: opts.dirtyMiBps ?? 20,
    };
    const total = opts.poolTotalBytes ?? 1024 ** 4;
    this.#totals = Object.fromEntries(
      Object.keys(opts.pools).map((name) => [
        name,
        typeof total === 'number' ? total : (total[name] ?? 1024 ** 4),
      ]),
    );
  }

  // --- the driver interface --------------------------------------------------------------------

  async init(): Promise<void> {
    for (const vm of this.#vms.values()) {
      if (vm.state === 'running' && !vm.booted && !vm.incoming) this.#scheduleBoot(vm);
    }
    const every = this.#o.guestHeartbeatMs;
    if (every > 0 && !this.#heartbeat) {
      this.#heartbeat = setInterval(() => this.#beat(), this.clock.real(every));
      this.#heartbeat.unref();
    }
  }

  async facts(): Promise<HostFacts> {
    await this.#enter('facts');
    return {
      hostname: this.hostname,
      driver: 'sim',
      accelerator: 'sim',
      acceleratorReason: 'simulated host: VMs are modelled, not run',
      cpuModel: this.#o.cpu.model,
      cpuVendor: this.#o.cpu.vendor,
      cpuFlags: this.#o.cpu.flags.slice(0, 1024),
      cores: this.#o.cores,
      memoryMiB: this.#o.memoryMiB,
      pools: Object.entries(this.#o.pools).map(([name, dir]) => {
        const totalBytes = this.#totals[name];
        return {
          name,
          path: dir,
          shared: this.#o.sharedPools.includes(name),
          totalBytes,
          freeBytes: Math.max(0, totalBytes - this.#usage.used(dir)),
        };
      }),
      versions: { sim: '1', node: process.versions.node },
      uefi: this.#o.uefi,
    };
  }

  list(): AgentVm[] {
    if (this.#poweredOff) return [];
    return [...[...this.#vms.values()].map((vm) => this.#snapshot(vm)), ...this.#stopped.values()];
  }

  spec(id: string): VmSpec | undefined {
    if (this.#poweredOff) return undefined;
    return this.#vms.get(id)?.spec;
  }

  get(id: string): AgentVm | undefined {
    if (this.#poweredOff) return undefined;
    const vm = this.#vms.get(id);
    return vm ? this.#snapshot(vm) : this.#stopped.get(id);
  }

  async run(spec: VmSpec): Promise<AgentVm> {
    await this.#enter('run');
    this.#checkVolumes(spec);
    const existing = this.#vms.get(spec.id);
    if (existing && existing.state !== 'crashed') return this.#snapshot(existing);
    this.#reserveMemory(spec);
    this.#stopped.delete(spec.id);
    if (existing) this.#discard(existing);
    const vm = this.#newVm(spec, 'running', null);
    vm.boots = 1;
    this.#appendConsole(spec.id, `[sim] ${spec.name}: power on, ${spec.vcpus} vCPU, ${spec.memoryMiB} MiB`);
    this.#scheduleBoot(vm);
    this.#log?.info({ vm: spec.id, name: spec.name }, 'started VM');
    this.#emit(vm);
    return this.#snapshot(vm);
  }

  async act(id: string, action: VmAction): Promise<AgentVm> {
    await this.#enter('act');
    const vm = this.#vms.get(id);
    if (!vm) {
      const stopped = this.#stopped.get(id);
      // Forcing off what is already off is done, not an error: a retried stop must succeed.
      if (stopped && action === 'kill') return stopped;
      throw new TernError(stopped ? 'conflict' : 'not_found', `VM ${id} is not running on this host`);
    }
    if (action === 'kill') {
      if (vm.state === 'crashed') {
        await this.forget(id);
        return { ...this.#snapshot(vm), state: 'stopped', reason: null, pid: null };
      }
      return this.#stop(vm);
    }
    const name = vm.spec.name;
    if (vm.state === 'crashed') throw new TernError('conflict', `VM ${name} is not running (crashed)`);
    if (vm.incoming) throw new TernError('conflict', `VM ${name} is waiting for an incoming migration`);
    if (vm.migratedAway)
      throw new TernError('conflict', `VM ${name} was migrated to another host and is stopped here`);
    switch (action) {
      case 'powerdown':
        // Like a real guest: ACPI is handled once the guest has booted, and not while paused.
        if (vm.state === 'running' && vm.booted && !vm.guestHung && vm.powerOffFails === null)
          this.#scheduleShutdown(vm);
        break;
      case 'guest-shutdown':
      case 'guest-reboot':
        if (vm.state !== 'running') throw new TernError('conflict', `VM ${name} is ${vm.state}`);
        if (vm.guest.agent !== 'responding' || vm.guestHung)
          throw new TernError('guest_error', `the guest agent of ${name} does not answer`);
        // As the QEMU driver words a guest agent's error reply.
        if (vm.powerOffFails !== null)
          throw new TernError('guest_error', `guest agent error: ${vm.powerOffFails}`);
        if (action === 'guest-reboot') this.#reboot(vm);
        else this.#scheduleShutdown(vm);
        break;
      case 'reset':
        this.#reboot(vm);
        break;
      case 'pause':
        if (vm.state === 'running') {
          vm.state = 'paused';
          vm.reason = 'paused by request';
        }
        break;
      case 'resume':
        if (vm.state === 'paused') {
          vm.state = 'running';
          vm.reason = null;
        }
        break;
      case 'thaw':
        break;
    }
    this.#emit(vm);
    return this.#snapshot(vm);
  }

  async forget(id: string): Promise<void> {
    await this.#enter('forget');
    this.#stopped.delete(id);
    const vm = this.#vms.get(id);
    if (!vm) {
      this.#consoles.delete(id);
      return;
    }
    if (vm.state !== 'crashed') throw new TernError('conflict', `VM ${id} is ${vm.state}; stop it first`);
    this.#discard(vm);
    this.#consoles.delete(id);
    this.events.emit('gone', id);
  }

  async consoleTail(id: string, maxBytes: number): Promise<string> {
    await this.#enter('consoleTail');
    const text = Buffer.from(this.#consoles.get(id) ?? '');
    return text.subarray(Math.max(0, text.length - maxBytes)).toString('utf8');
  }

  async resizeDisk(id: string, index: number, sizeBytes: number): Promise<void> {
    await this.#enter('resizeDisk');
    const vm = this.#running(id);
    const disk = vm.spec.disks[index];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
    await resizeVolume(this.#o.pools, { volume: disk.volume, sizeBytes });
  }

  async attachDisk(id: string, disk: DiskSpec): Promise<void> {
    await this.#enter('attachDisk');
    const vm = this.#running(id);
    const slot = disk.slot ?? 0;
    if (vm.spec.disks.some((d, i) => diskSlot(d, i) === slot)) {
      throw new TernError('conflict', `slot ${slot} of ${vm.spec.name} holds a disk`);
    }
    if (!fs.existsSync(resolveVolume(this.#o.pools, disk.volume)))
      throw new TernError('storage_error', `volume ${disk.volume.path} does not exist`);
    vm.spec = { ...vm.spec, disks: [...vm.spec.disks, { ...disk, slot }] };
    this.#refreshGuestDisks(vm);
  }

  /** The simulated guest never locks its tray: a change always goes through. */
  async changeCdrom(id: string, medium: VolumeRef | null, _force: boolean): Promise<void> {
    await this.#enter('changeCdrom');
    const vm = this.#running(id);
    if (!vm.spec.cdrom)
      throw new TernError(
        'conflict',
        `VM ${vm.spec.name} has no CD-ROM drive; a drive can only be added while it is stopped`,
      );
    if (medium && !fs.existsSync(resolveVolume(this.#o.pools, medium)))
      throw new TernError('storage_error', `volume ${medium.pool}:${medium.path} does not exist`);
    vm.spec = { ...vm.spec, cdrom: { medium } };
  }

  async detachDisk(id: string, index: number): Promise<void> {
    await this.#enter('detachDisk');
    const vm = this.#running(id);
    if (!vm.spec.disks[index]) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${index}`);
    if (vm.guestHung || vm.state !== 'running') {
      throw new TernError(
        'timeout',
        `the guest of ${vm.spec.name} did not release disk ${index} within 60 s`,
      );
    }
    vm.spec = { ...vm.spec, disks: withoutDisk(vm.spec, index) };
    this.#refreshGuestDisks(vm);
  }

  async snapshot(id: string, name: string) {
    await this.#enter('snapshot');
    const vm = this.#running(id);
    const disks = vm.spec.disks.filter((d) => !d.readonly && d.format === 'qcow2');
    if (disks.length === 0)
      throw new TernError('conflict', `VM ${vm.spec.name} has no qcow2 disk to snapshot`);
    const frozen = vm.state === 'running' && vm.guest.agent === 'responding' && !vm.guestHung;
    for (const d of disks) await volumeSnapshot(this.#o.pools, { volume: d.volume, op: 'create', name });
    return { consistency: frozen ? ('filesystem-frozen' as const) : ('crash-consistent' as const) };
  }

  async deleteSnapshot(id: string, name: string): Promise<void> {
    await this.#enter('deleteSnapshot');
    const vm = this.#running(id);
    for (const d of vm.spec.disks) {
      if (d.readonly || d.format !== 'qcow2') continue;
      await volumeSnapshot(this.#o.pools, { volume: d.volume, op: 'delete', name }).catch((err: Error) => {
        // A disk added after the snapshot does not have it.
        if (!/not found|does not exist/i.test(err.message)) throw err;
      });
    }
  }

  // The simulated guest has no programs and no files: it says so rather than making output up.
  async guestExec(id: string): Promise<GuestExecResult> {
    await this.#enter('guestExec');
    throw notInSim(this.#running(id).spec.name, 'runs no commands');
  }

  async guestFileRead(id: string): Promise<Buffer> {
    await this.#enter('guestFileRead');
    throw notInSim(this.#running(id).spec.name, 'has no files to read');
  }

  // --- migration --------------------------------------------------------------------------------

  async prepareIncoming(req: IncomingMigrationRequest): Promise<IncomingMigration> {
    await this.#enter('prepareIncoming');
    const { spec } = req;
    const existing = this.#vms.get(spec.id);
    if (existing && existing.state !== 'crashed') {
      throw new TernError('conflict', `VM ${spec.name} already is on ${this.hostname} (${existing.state})`);
    }
    if (req.mode === 'quick' && !req.stateFile)
      throw new TernError('invalid_request', 'a quick migration needs a state file');
    const uri = `sim://${this.hostname}/${spec.id}`;
    if (incoming.byUri(uri))
      throw new TernError('conflict', `a migration of ${spec.name} is already expected`);
    this.#reserveMemory(spec);
    const created: VolumeRef[] = [];
    try {
      if (req.storage === 'mirror') {
        for (const c of req.create ?? []) {
          await createVolume(this.#o.pools, { volume: c.volume, format: c.format, sizeBytes: c.sizeBytes });
          created.push(c.volume);
        }
      }
      this.#checkVolumes(spec);
      // The volumes took time: the same request may have come twice, another VM may have
      // taken the memory meanwhile.
      if (this.#vms.get(spec.id) !== existing || incoming.byUri(uri))
        throw new TernError('conflict', `a migration of ${spec.name} is already expected`);
      this.#reserveMemory(spec);
    } catch (err) {
      for (const ref of created) deleteVolume(this.#o.pools, ref);
      throw err;
    }
    const nbd =
      req.storage === 'mirror'
        ? {
            host: req.listenHost,
            port: simNbdPort(),
            drives: writableDrives(spec).map(([drive]) => drive),
          }
        : null;
    this.#stopped.delete(spec.id);
    if (existing) this.#discard(existing);
    const vm = this.#newVm(spec, 'paused', 'incoming migration');
    const pools = this.#o.pools;
    const entry: IncomingEntry = {
      vmId: spec.id,
      uri,
      nbd: nbd ? `${nbd.host}:${nbd.port}` : null,
      networkMiBps: this.#o.networkMiBps,
      reachable: () => this.faults.reachable && !this.#poweredOff,
      driveFiles: () =>
        new Map(writableDrives(vm.spec).map(([drive, ref]) => [drive, resolveVolume(pools, ref)])),
      carried: null,
    };
    incoming.add(entry);
    vm.incoming = { entry, stateFile: req.stateFile ?? null, created };
    this.#emit(vm);
    return { uri, nbd };
  }

  async finishIncoming(id: string): Promise<FinishIncomingResult> {
    await this.#enter('finishIncoming');
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not on this host`);
    // A repeated finish of a VM that already runs here is done.
    if (!vm.incoming && vm.state === 'running')
      return { vm: this.#snapshot(vm), resumedAt: this.clock.now() };
    if (!vm.incoming) throw new TernError('conflict', `VM ${vm.spec.name} is not waiting for a migration`);
    const carried = vm.incoming.stateFile
      ? readStateFile(resolveVolume(this.#o.pools, vm.incoming.stateFile))
      : vm.incoming.entry.carried;
    if (!carried)
      throw new TernError(
        'conflict',
        `the migration state of ${vm.spec.name} has not arrived on ${this.hostname}`,
      );
    this.#unregister(vm);
    vm.incoming = null;
    vm.state = 'running';
    vm.reason = null;
    vm.boots = carried.boots;
    vm.dirtyMiBps = carried.dirtyMiBps;
    vm.booted = carried.booted;
    vm.guest = carried.guest;
    if (vm.guest.agent === 'responding') vm.guest.lastHeartbeat = new Date().toISOString();
    this.#consoles.set(id, carried.console);
    if (!vm.booted) this.#scheduleBoot(vm);
    this.#emit(vm);
    return { vm: this.#snapshot(vm), resumedAt: this.clock.now() };
  }

  async abortIncoming(id: string): Promise<void> {
    await this.#enter('abortIncoming');
    const vm = this.#vms.get(id);
    if (!vm) return;
    if (!vm.incoming) {
      throw new TernError(
        'conflict',
        `VM ${vm.spec.name} runs on ${this.hostname}; it is not waiting for a migration`,
      );
    }
    for (const ref of vm.incoming.created) deleteVolume(this.#o.pools, ref);
    this.#discard(vm);
    this.#consoles.delete(id);
    this.events.emit('gone', id);
  }

  async migrate(
    id: string,
    req: MigrateRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<MigrationReport & { type: 'done' }> {
    await this.#enter('migrate');
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not running on this host`);
    const name = vm.spec.name;
    if (vm.state !== 'running' && vm.state !== 'paused')
      throw new TernError('conflict', `VM ${name} is ${vm.state}`);
    if (vm.incoming || vm.migratedAway || vm.migration)
      throw new TernError('conflict', `VM ${name} is already migrating`);
    if (req.mode === 'quick' && !req.stateFile)
      throw new TernError('invalid_request', 'a quick migration needs a state file');
    const entry = req.mode === 'live' ? this.#reachIncoming(req, vm) : null;
    const abort = new AbortController();
    vm.migration = abort;
    const run = new MigrationRun(
      this.#sourceSide(vm),
      progress,
      signal,
      AbortSignal.any([signal, abort.signal]),
    );
    const net = this.#o.networkMiBps;
    try {
      if (req.nbd) {
        const peer = incoming.byNbd(`${req.nbd.host}:${req.nbd.port}`);
        await run.mirrorDisks(req.nbd, bandwidth(req, net, peer?.networkMiBps));
      }
      if (entry) return await run.live(req, entry, bandwidth(req, net, entry.networkMiBps));
      return await run.quick(resolveVolume(this.#o.pools, req.stateFile!), bandwidth(req, this.#o.diskMiBps));
    } finally {
      vm.migration = null;
    }
  }

  async releaseMigrated(id: string): Promise<void> {
    await this.#enter('releaseMigrated');
    const vm = this.#vms.get(id);
    if (!vm) return;
    if (!vm.migratedAway)
      throw new TernError(
        'conflict',
        `VM ${vm.spec.name} runs on ${this.hostname}; it was not migrated away`,
      );
    this.#discard(vm);
    this.#consoles.delete(id);
    this.events.emit('gone', id);
  }

  async moveDisk(
    id: string,
    req: MoveDiskRequest,
    progress: (r: MigrationReport) => void,
    signal: AbortSignal,
  ): Promise<void> {
    await this.#enter('moveDisk');
    const vm = this.#running(id);
    const disk = vm.spec.disks[req.index];
    if (!disk) throw new TernError('not_found', `VM ${vm.spec.name} has no disk ${req.index}`);
    const from = resolveVolume(this.#o.pools, disk.volume);
    const to = resolveVolume(this.#o.pools, req.target);
    if (from === to) throw new TernError('invalid_request', 'the disk already is on that volume');
    const existed = fs.existsSync(to);
    const run = new MigrationRun(this.#sourceSide(vm), progress, signal, signal);
    await run.copy('disks', allocatedBytes(from), this.#o.diskMiBps * MiB);
    try {
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.copyFileSync(from, to);
    } catch (err) {
      if (!existed) fs.rmSync(to, { force: true });
      throw new TernError('storage_error', `moving disk ${req.index}: ${(err as Error).message}`);
    }
    const disks = vm.spec.disks.map((d, i) =>
      i === req.index ? { ...d, volume: req.target, slot: diskSlot(d, i) } : d,
    );
    vm.spec = { ...vm.spec, disks };
  }

  async close(): Promise<void> {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    // The VMs stay, as real ones outlive their agent; only the clocks inside the guests stop.
    for (const vm of this.#vms.values()) {
      this.#clearTimer(vm);
      vm.migration?.abort();
    }
    this.faults.clear(new TernError('unavailable', `the agent of ${this.hostname} is shutting down`));
  }

  // --- fault injection and simulation knobs ----------------------------------------------------

  /** The VM's process dies: reported crashed, as when QEMU ends unasked. */
  crash(id: string, reason = 'QEMU ended without being asked to'): void {
    const vm = this.#vms.get(id);
    if (!vm || vm.state === 'crashed')
      throw new TernError('not_found', `VM ${id} is not running on ${this.hostname}`);
    this.#markCrashed(vm, `${reason}; last output: simulated crash`);
  }

  /** A disk of the VM cannot grow (its pool is full): paused as QEMU pauses it, `resume` goes on. */
  storageFull(id: string, disk = 'disk0'): void {
    const vm = this.#vms.get(id);
    if (vm?.state !== 'running')
      throw new TernError('conflict', `VM ${id} is not running on ${this.hostname}`);
    vm.state = 'paused';
    vm.reason = `storage full: disk ${disk} cannot grow`;
    this.#emit(vm);
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

  /** Memory the guest dirties per second from now on (live migration convergence). */
  setDirtyRate(id: string, mibPerS: number): void {
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not on ${this.hostname}`);
    vm.dirtyMiBps = mibPerS;
  }

  /** A hung guest: its agent stops answering, ACPI and hot-unplug go unheard; false revives it. */
  setGuestHung(id: string, hung: boolean): void {
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not on ${this.hostname}`);
    vm.guestHung = hung;
    if (vm.booted && vm.state === 'running') {
      vm.guest = { ...vm.guest, agent: hung ? 'not-responding' : 'responding' };
      if (!hung) vm.guest.lastHeartbeat = new Date().toISOString();
      this.#emit(vm);
    }
  }

  /**
   * Breaks (with a message) or mends (null) the guest's power-off, as on a systemd guest without
   * logind: the ACPI button does nothing, and its guest agent answers guest-shutdown (also in
   * reboot mode) with the error `message`.
   */
  setGuestPowerOffFails(id: string, message: string | null): void {
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not on ${this.hostname}`);
    vm.powerOffFails = message;
  }

  /**
   * The host loses power: every VM is gone at once, the agent is unreachable, and (in a sim
   * cluster, which follows `faults.power`) the agent stops: no heartbeat, no lease renewal.
   * After `powerOn` the agent starts again and finds the VMs that ran crashed, as after a reboot.
   */
  powerOff(): void {
    if (this.#poweredOff) return;
    this.setReachable(false);
    this.#poweredOff = true;
    this.faults.power.emit('power', false);
    for (const vm of this.#vms.values()) {
      this.#clearTimer(vm);
      vm.migration?.abort();
      this.#unregister(vm);
      if (vm.state !== 'crashed') this.#lost.push(vm);
    }
    this.#vms.clear();
  }

  powerOn(): void {
    if (!this.#poweredOff) return;
    this.#poweredOff = false;
    for (const vm of this.#lost) {
      vm.incoming = null;
      vm.migratedAway = false;
      this.#vms.set(vm.spec.id, vm);
      this.#markCrashed(vm, 'QEMU ended while the agent was not running');
    }
    this.#lost = [];
    this.setReachable(true);
    this.faults.power.emit('power', true);
  }

  get poweredOff(): boolean {
    return this.#poweredOff;
  }

  /** Memory (MiB) held by VMs that have a process: running, paused, incoming, migrated away. */
  memoryInUseMiB(): number {
    let used = 0;
    for (const vm of this.#vms.values()) if (vm.state !== 'crashed') used += vm.spec.memoryMiB;
    return used;
  }

  // --- internals --------------------------------------------------------------------------------

  async #enter(op: SimOperation): Promise<void> {
    if (this.#poweredOff) throw new TernError('unavailable', `host ${this.hostname} is powered off`);
    await this.faults.enter(op);
  }

  #newVm(spec: VmSpec, state: AgentVmState, reason: string | null): SimVm {
    const vm: SimVm = {
      spec,
      state,
      reason,
      pid: nextPid++,
      startedAt: new Date().toISOString(),
      guest: emptyGuestInfo(),
      booted: false,
      boots: 0,
      dirtyMiBps: this.#o.dirtyMiBps,
      guestHung: false,
      powerOffFails: null,
      timer: null,
      incoming: null,
      migration: null,
      migratedAway: false,
    };
    this.#vms.set(spec.id, vm);
    return vm;
  }

  #snapshot(vm: SimVm): AgentVm {
    return {
      id: vm.spec.id,
      name: vm.spec.name,
      state: vm.state,
      reason: vm.reason,
      pid: vm.pid,
      // No display: a simulated VM has no VNC server to connect to.
      vncPort: null,
      startedAt: vm.startedAt,
      guest: {
        ...vm.guest,
        boots: vm.boots,
        interfaces: vm.guest.interfaces.map((i) => ({ ...i, addresses: [...i.addresses] })),
      },
    };
  }

  #emit(vm: SimVm): void {
    if (!this.#poweredOff) this.events.emit('vm', this.#snapshot(vm));
  }

  #running(id: string): SimVm {
    const vm = this.#vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not running on this host`);
    if (vm.state === 'crashed' || vm.incoming || vm.migratedAway) {
      throw new TernError('conflict', `VM ${vm.spec.name} is not running (${vm.reason ?? vm.state})`);
    }
    return vm;
  }

  #checkVolumes(spec: VmSpec): void {
    const pools = this.#o.pools;
    if (spec.firmware === 'uefi' && !this.#o.uefi)
      throw new TernError('hypervisor_error', `VM ${spec.name} boots with UEFI and this host has no OVMF`);
    const refs = [
      ...spec.disks.map((d) => d.volume),
      spec.seed,
      spec.boot?.kernel,
      spec.boot?.initrd,
      spec.efiVars,
      spec.cdrom?.medium ?? undefined,
    ];
    for (const ref of refs) {
      if (!ref) continue;
      const file = resolveVolume(pools, ref);
      if (!fs.existsSync(file)) throw new TernError('storage_error', `volume ${file} does not exist`);
    }
  }

  /** A real host fails to allocate the guest's memory; so does this one, with the figures. */
  #reserveMemory(spec: VmSpec): void {
    const free = this.#o.memoryMiB - this.memoryInUseMiB();
    if (spec.memoryMiB > free) {
      throw new TernError(
        'hypervisor_error',
        `cannot allocate ${spec.memoryMiB} MiB for VM ${spec.name}: host ${this.hostname} has ${free} MiB of ${this.#o.memoryMiB} MiB free`,
        { neededMiB: spec.memoryMiB, freeMiB: free, totalMiB: this.#o.memoryMiB },
      );
    }
  }

  #clearTimer(vm: SimVm): void {
    if (vm.timer) clearTimeout(vm.timer);
    vm.timer = null;
  }

  #later(vm: SimVm, simMs: number, fn: () => void): void {
    this.#clearTimer(vm);
    vm.timer = setTimeout(() => {
      vm.timer = null;
      fn();
    }, this.clock.real(simMs));
  }

  #scheduleBoot(vm: SimVm): void {
    this.#later(vm, this.#o.bootDelayMs, () => this.#boot(vm));
  }

  #boot(vm: SimVm): void {
    if (this.#vms.get(vm.spec.id) !== vm || vm.state === 'crashed' || vm.incoming) return;
    vm.booted = true;
    vm.guest = guestFacts(vm.spec, vm.guestHung, vm.boots);
    this.#appendConsole(
      vm.spec.id,
      `TERN-GUEST-READY hostname=${vm.spec.name} instance=${vm.spec.id} boot=${vm.boots}`,
    );
    this.#emit(vm);
  }

  #reboot(vm: SimVm): void {
    vm.booted = false;
    vm.boots++;
    vm.guest = { ...vm.guest, agent: 'not-responding', bootId: null };
    this.#appendConsole(vm.spec.id, `[sim] ${vm.spec.name}: reset`);
    this.#scheduleBoot(vm);
  }

  #scheduleShutdown(vm: SimVm): void {
    this.#later(vm, this.#o.shutdownDelayMs, () => {
      if (this.#vms.get(vm.spec.id) === vm && vm.state === 'running' && !vm.migration) this.#stop(vm);
    });
  }

  /** The VM ends on purpose: remembered as stopped until it starts again or is forgotten. */
  #stop(vm: SimVm): AgentVm {
    vm.migration?.abort();
    this.#discard(vm);
    if (vm.incoming) for (const ref of vm.incoming.created) deleteVolume(this.#o.pools, ref);
    this.#appendConsole(vm.spec.id, `[sim] ${vm.spec.name}: power off`);
    const stopped: AgentVm = {
      ...this.#snapshot(vm),
      state: 'stopped',
      reason: null,
      pid: null,
      startedAt: null,
      guest: emptyGuestInfo(),
    };
    this.#stopped.set(vm.spec.id, stopped);
    if (!this.#poweredOff) this.events.emit('vm', stopped);
    return stopped;
  }

  /** Drops the VM's record and whatever it holds (timers, a pending incoming migration). */
  #discard(vm: SimVm): void {
    this.#clearTimer(vm);
    this.#unregister(vm);
    if (this.#vms.get(vm.spec.id) === vm) this.#vms.delete(vm.spec.id);
  }

  #unregister(vm: SimVm): void {
    if (vm.incoming) incoming.remove(vm.incoming.entry);
  }

  #markCrashed(vm: SimVm, reason: string): void {
    this.#clearTimer(vm);
    vm.migration?.abort();
    if (vm.incoming) {
      this.#unregister(vm);
      vm.incoming = null;
    }
    vm.state = 'crashed';
    vm.reason = reason;
    vm.pid = null;
    vm.booted = false;
    vm.boots = 0;
    vm.guest = { ...emptyGuestInfo(), lastHeartbeat: vm.guest.lastHeartbeat };
    this.#log?.error({ vm: vm.spec.id }, reason);
    this.#emit(vm);
  }

  #refreshGuestDisks(vm: SimVm): void {
    if (vm.booted && !vm.guestHung) {
      vm.guest = { ...vm.guest, disks: vm.spec.disks.map((_, i) => `/dev/vd${String.fromCharCode(97 + i)}`) };
    }
    this.#emit(vm);
  }

  #beat(): void {
    const now = new Date().toISOString();
    for (const vm of this.#vms.values()) {
      if (vm.state !== 'running' || vm.guest.agent !== 'responding') continue;
      vm.guest.lastHeartbeat = now;
      this.#emit(vm);
    }
  }

  #appendConsole(id: string, line: string): void {
    const text = `${this.#consoles.get(id) ?? ''}${line}\n`;
    this.#consoles.set(id, text.length > consoleLimit ? text.slice(text.length - consoleLimit) : text);
  }

  #reachIncoming(req: MigrateRequest, vm: SimVm): IncomingEntry {
    if (!req.uri) throw new TernError('invalid_request', 'a live migration needs the target URI');
    const entry = incoming.byUri(req.uri);
    if (!entry?.reachable()) {
      throw new TernError(
        'hypervisor_error',
        `migration of ${vm.spec.name} failed: no simulated host waits for it at ${req.uri}`,
      );
    }
    if (entry.vmId !== vm.spec.id)
      throw new TernError('conflict', `${req.uri} waits for another VM than ${vm.spec.name}`);
    return entry;
  }

  /** The source's side of a migration run. */
  #sourceSide(vm: SimVm): SourceSide {
    const pools = this.#o.pools;
    return {
      hostname: this.hostname,
      clock: this.clock,
      spec: () => vm.spec,
      state: () => vm.state,
      dirtyMiBps: () => vm.dirtyMiBps,
      alive: () => !this.#poweredOff && this.#vms.get(vm.spec.id) === vm && vm.state !== 'crashed',
      carry: () => ({
        guest: { ...vm.guest, interfaces: vm.guest.interfaces.map((i) => ({ ...i })) },
        booted: vm.booted,
        boots: vm.boots,
        dirtyMiBps: vm.dirtyMiBps,
        console: this.#consoles.get(vm.spec.id) ?? '',
      }),
      pause: (reason) => {
        const before = { state: vm.state, reason: vm.reason };
        vm.state = 'paused';
        vm.reason = reason;
        this.#emit(vm);
        return () => {
          if (this.#vms.get(vm.spec.id) !== vm || vm.state === 'crashed') return;
          vm.state = before.state;
          vm.reason = before.reason;
          this.#emit(vm);
        };
      },
      migrated: () => {
        vm.migratedAway = true;
        vm.state = 'paused';
        vm.reason = 'postmigrate';
        this.#clearTimer(vm);
        this.#emit(vm);
      },
      drives: () => writableDrives(vm.spec).map(([drive, ref]) => [drive, resolveVolume(pools, ref)]),
    };
  }
}

/** Bytes per simulated second: this host's link, the request's limit and the peer's link. */
function notInSim(vm: string, what: string): TernError {
  return new TernError(
    'conflict',
    `the simulated guest of VM ${vm} ${what}: guest commands and file reads are not supported by the sim driver`,
  );
}

function bandwidth(req: MigrateRequest, ownMiBps: number, peerMiBps?: number): number {
  let mibps = ownMiBps;
  if (req.bandwidthMiBps > 0) mibps = Math.min(mibps, req.bandwidthMiBps);
  if (peerMiBps !== undefined) mibps = Math.min(mibps, peerMiBps);
  return mibps * MiB;
}

/** Writable disks by drive (node) name, as the QEMU driver names them for NBD exports. */
function writableDrives(spec: VmSpec): [string, VolumeRef][] {
  return spec.disks.flatMap((d, i) => (d.readonly ? [] : [[diskNodes(diskSlot(d, i)).format, d.volume]]));
}
