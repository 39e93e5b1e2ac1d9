/**
 * Faults of a simulated VM's guest and process, as tests set them: a crash, a disk that cannot
 * grow, memory dirtied at a rate, a hung guest, a power-off the guest refuses. Knobs of the sim
 * driver (driver.ts), nothing the agent protocol reaches.
 */
import { TernError } from '../../errors.ts';
import type { SimVm, SimVms } from './vms.ts';

function present(sim: SimVms, id: string): SimVm {
  const vm = sim.vms.get(id);
  if (!vm) throw new TernError('not_found', `VM ${id} is not on ${sim.hostname}`);
  return vm;
}

/** The VM's process dies: reported crashed, as when QEMU ends unasked. */
export function crash(sim: SimVms, id: string, reason: string): void {
  const vm = sim.vms.get(id);
  if (!vm || vm.state === 'crashed')
    throw new TernError('not_found', `VM ${id} is not running on ${sim.hostname}`);
  sim.markCrashed(vm, `${reason}; last output: simulated crash`);
}

/** A disk of the VM cannot grow (its pool is full): paused as QEMU pauses it, `resume` goes on. */
export function storageFull(sim: SimVms, id: string, disk: string): void {
  const vm = sim.vms.get(id);
  if (vm?.state !== 'running') throw new TernError('conflict', `VM ${id} is not running on ${sim.hostname}`);
  vm.state = 'paused';
  vm.reason = `storage full: disk ${disk} cannot grow`;
  sim.emit(vm);
}

/** Memory the guest dirties per second from now on (live migration convergence). */
export function setDirtyRate(sim: SimVms, id: string, mibPerS: number): void {
  present(sim, id).dirtyMiBps = mibPerS;
}

/** A hung guest: its agent stops answering, ACPI and hot-unplug go unheard; false revives it. */
export function setGuestHung(sim: SimVms, id: string, hung: boolean): void {
  const vm = present(sim, id);
  vm.guestHung = hung;
  if (vm.booted && vm.state === 'running') {
    vm.guest = { ...vm.guest, agent: hung ? 'not-responding' : 'responding' };
    if (!hung) vm.guest.lastHeartbeat = new Date().toISOString();
    sim.emit(vm);
  }
}

/**
 * Breaks (with a message) or mends (null) the guest's power-off, as on a systemd guest without
 * logind: the ACPI button does nothing, and its guest agent answers guest-shutdown (also in
 * reboot mode) with the error `message`.
 */
export function setGuestPowerOffFails(sim: SimVms, id: string, message: string | null): void {
  present(sim, id).powerOffFails = message;
}
