/**
 * The simulated VMs of one host and their life: the record of each (state, guest, timers),
 * power-on to boot, reboot, shutdown and crash, the VMs stopped on purpose, the consoles, and
 * the host memory they hold. The driver (driver.ts) and both sides of a migration
 * (migrate-vm.ts) act on VMs through this.
 */
import type { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { TernError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { AgentVm, AgentVmState, VmAction } from '../../wire/agent.ts';
import { emptyGuestInfo, type GuestInfo, type VmSpec, type VolumeRef } from '../../wire/vm.ts';
import type { DriverEvents } from '../driver.ts';
import type { HostNetworks } from '../network/host-networks.ts';
import { plugPorts } from '../qemu/vm-ports.ts';
import { type Pools, resolveVolume } from '../storage/pools.ts';
import { deleteVolume } from '../storage/volumes.ts';
import type { SimClock } from './clock.ts';
import { guestFacts } from './guest.ts';
import { type IncomingEntry, incoming } from './migration.ts';

export interface SimVm {
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

export interface SimVmsOptions {
  hostname: string;
  pools: Pools;
  uefi: boolean;
  memoryMiB: number;
  bootDelayMs: number;
  shutdownDelayMs: number;
  dirtyMiBps: number;
  clock: SimClock;
  log: Logger | undefined;
  events: EventEmitter<DriverEvents>;
  /** The host's networks: a VM's ports are recorded while it has a process, as QEMU's taps are. */
  networks: HostNetworks;
}

export class SimVms {
  readonly hostname: string;
  readonly vms = new Map<string, SimVm>();
  /** VMs stopped on purpose, until they start again or are forgotten (as the QEMU driver keeps them). */
  readonly stopped = new Map<string, AgentVm>();
  readonly consoles = new Map<string, string>();
  /** The host has no power: nothing is reported. */
  poweredOff = false;
  readonly pools: Pools;
  readonly clock: SimClock;
  readonly events: EventEmitter<DriverEvents>;
  readonly networks: HostNetworks;
  readonly #o: SimVmsOptions;
  readonly #log: Logger | undefined;
  /** VMs that ran when the power went: found crashed when the host comes back. */
  #lost: SimVm[] = [];

  constructor(o: SimVmsOptions) {
    this.hostname = o.hostname;
    this.pools = o.pools;
    this.clock = o.clock;
    this.events = o.events;
    this.networks = o.networks;
    this.#o = o;
    this.#log = o.log;
  }

  /** A power action on a VM with a process here, as its guest would take it. */
  act(vm: SimVm, action: Exclude<VmAction, 'kill'>): AgentVm {
    const name = vm.spec.name;
    if (vm.state === 'crashed') throw new TernError('conflict', `VM ${name} is not running (crashed)`);
    if (vm.incoming) throw new TernError('conflict', `VM ${name} is waiting for an incoming migration`);
    if (vm.migratedAway)
      throw new TernError('conflict', `VM ${name} was migrated to another host and is stopped here`);
    switch (action) {
      case 'powerdown':
        // Like a real guest: ACPI is handled once the guest has booted, and not while paused.
        if (vm.state === 'running' && vm.booted && !vm.guestHung && vm.powerOffFails === null)
          this.scheduleShutdown(vm);
        break;
      case 'guest-shutdown':
      case 'guest-reboot':
        if (vm.state !== 'running') throw new TernError('conflict', `VM ${name} is ${vm.state}`);
        if (vm.guest.agent !== 'responding' || vm.guestHung)
          throw new TernError('guest_error', `the guest agent of ${name} does not answer`);
        // As the QEMU driver words a guest agent's error reply.
        if (vm.powerOffFails !== null)
          throw new TernError('guest_error', `guest agent error: ${vm.powerOffFails}`);
        if (action === 'guest-reboot') this.reboot(vm);
        else this.scheduleShutdown(vm);
        break;
      case 'reset':
        this.reboot(vm);
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
    this.emit(vm);
    return this.snapshot(vm);
  }

  /** The power goes: every VM is gone at once; those that ran are found crashed at `findLost`. */
  loseAll(): void {
    for (const vm of this.vms.values()) {
      this.clearTimer(vm);
      vm.migration?.abort();
      this.unregister(vm);
      if (vm.state !== 'crashed') this.#lost.push(vm);
    }
    this.vms.clear();
  }

  /** The power is back: the VMs that ran when it went are crashed, as after a reboot. */
  findLost(): void {
    for (const vm of this.#lost) {
      vm.incoming = null;
      vm.migratedAway = false;
      this.vms.set(vm.spec.id, vm);
      this.markCrashed(vm, 'QEMU ended while the agent was not running');
    }
    this.#lost = [];
  }

  /** Memory (MiB) held by VMs that have a process: running, paused, incoming, migrated away. */
  memoryInUseMiB(): number {
    let used = 0;
    for (const vm of this.vms.values()) if (vm.state !== 'crashed') used += vm.spec.memoryMiB;
    return used;
  }

  add(spec: VmSpec, state: AgentVmState, reason: string | null): SimVm {
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
    this.vms.set(spec.id, vm);
    return vm;
  }

  snapshot(vm: SimVm): AgentVm {
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

  emit(vm: SimVm): void {
    if (!this.poweredOff) this.events.emit('vm', this.snapshot(vm));
  }

  running(id: string): SimVm {
    const vm = this.vms.get(id);
    if (!vm) throw new TernError('not_found', `VM ${id} is not running on this host`);
    if (vm.state === 'crashed' || vm.incoming || vm.migratedAway) {
      throw new TernError('conflict', `VM ${vm.spec.name} is not running (${vm.reason ?? vm.state})`);
    }
    return vm;
  }

  checkVolumes(spec: VmSpec): void {
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
  reserveMemory(spec: VmSpec): void {
    const free = this.#o.memoryMiB - this.memoryInUseMiB();
    if (spec.memoryMiB > free) {
      throw new TernError(
        'hypervisor_error',
        `cannot allocate ${spec.memoryMiB} MiB for VM ${spec.name}: host ${this.hostname} has ${free} MiB of ${this.#o.memoryMiB} MiB free`,
        { neededMiB: spec.memoryMiB, freeMiB: free, totalMiB: this.#o.memoryMiB },
      );
    }
  }

  clearTimer(vm: SimVm): void {
    if (vm.timer) clearTimeout(vm.timer);
    vm.timer = null;
  }

  #later(vm: SimVm, simMs: number, fn: () => void): void {
    this.clearTimer(vm);
    vm.timer = setTimeout(() => {
      vm.timer = null;
      fn();
    }, this.clock.real(simMs));
  }

  scheduleBoot(vm: SimVm): void {
    this.#later(vm, this.#o.bootDelayMs, () => this.#boot(vm));
  }

  #boot(vm: SimVm): void {
    if (this.vms.get(vm.spec.id) !== vm || vm.state === 'crashed' || vm.incoming) return;
    vm.booted = true;
    vm.guest = guestFacts(vm.spec, vm.guestHung, vm.boots);
    this.appendConsole(
      vm.spec.id,
      `TERN-GUEST-READY hostname=${vm.spec.name} instance=${vm.spec.id} boot=${vm.boots}`,
    );
    this.emit(vm);
  }

  reboot(vm: SimVm): void {
    vm.booted = false;
    vm.boots++;
    vm.guest = { ...vm.guest, agent: 'not-responding', bootId: null };
    this.appendConsole(vm.spec.id, `[sim] ${vm.spec.name}: reset`);
    this.scheduleBoot(vm);
  }

  scheduleShutdown(vm: SimVm): void {
    this.#later(vm, this.#o.shutdownDelayMs, () => {
      if (this.vms.get(vm.spec.id) === vm && vm.state === 'running' && !vm.migration) this.stop(vm);
    });
  }

  /** The VM ends on purpose: remembered as stopped until it starts again or is forgotten. */
  stop(vm: SimVm): AgentVm {
    vm.migration?.abort();
    this.discard(vm);
    if (vm.incoming) for (const ref of vm.incoming.created) deleteVolume(this.#o.pools, ref);
    this.appendConsole(vm.spec.id, `[sim] ${vm.spec.name}: power off`);
    const stopped: AgentVm = {
      ...this.snapshot(vm),
      state: 'stopped',
      reason: null,
      pid: null,
      startedAt: null,
      guest: emptyGuestInfo(),
    };
    this.stopped.set(vm.spec.id, stopped);
    if (!this.poweredOff) this.events.emit('vm', stopped);
    return stopped;
  }

  /** Drops the VM's record and whatever it holds (timers, a pending incoming migration). */
  discard(vm: SimVm): void {
    this.clearTimer(vm);
    this.unregister(vm);
    if (this.vms.get(vm.spec.id) === vm) {
      this.vms.delete(vm.spec.id);
      this.unplugPorts(vm.spec.id);
    }
  }

  /**
   * Before the VM has a process here (a start, an incoming migration): its ports, as the QEMU
   * driver plugs them before QEMU opens them; a network not ready here fails the start. Ports
   * left of an earlier process of it go first.
   */
  async plugPorts(spec: VmSpec): Promise<void> {
    this.unplugPorts(spec.id);
    await plugPorts(this.networks, spec);
  }

  /** Its process ended: the VM's ports go (records only, so this is done at once). */
  unplugPorts(id: string): void {
    for (const tap of this.networks.portsOf(id)) void this.networks.unplug(tap);
  }

  unregister(vm: SimVm): void {
    if (vm.incoming) incoming.remove(vm.incoming.entry);
  }

  markCrashed(vm: SimVm, reason: string): void {
    this.clearTimer(vm);
    vm.migration?.abort();
    if (vm.incoming) {
      this.unregister(vm);
      vm.incoming = null;
    }
    vm.state = 'crashed';
    this.unplugPorts(vm.spec.id);
    vm.reason = reason;
    vm.pid = null;
    vm.booted = false;
    vm.boots = 0;
    vm.guest = { ...emptyGuestInfo(), lastHeartbeat: vm.guest.lastHeartbeat };
    this.#log?.error({ vm: vm.spec.id }, reason);
    this.emit(vm);
  }

  refreshGuestDisks(vm: SimVm): void {
    if (vm.booted && !vm.guestHung) {
      vm.guest = { ...vm.guest, disks: vm.spec.disks.map((_, i) => `/dev/vd${String.fromCharCode(97 + i)}`) };
    }
    this.emit(vm);
  }

  beat(): void {
    const now = new Date().toISOString();
    for (const vm of this.vms.values()) {
      if (vm.state !== 'running' || vm.guest.agent !== 'responding') continue;
      vm.guest.lastHeartbeat = now;
      this.emit(vm);
    }
  }

  appendConsole(id: string, line: string): void {
    const text = `${this.consoles.get(id) ?? ''}${line}\n`;
    this.consoles.set(id, text.length > consoleLimit ? text.slice(text.length - consoleLimit) : text);
  }
}
