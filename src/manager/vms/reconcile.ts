/**
 * Reality wins: what a host reports about a VM decides the VM's state in the inventory.
 * Pure, so every case (crash seen late, VM unknown to its host, host unreachable) is tested.
 */
import type { AgentVm } from '../../wire/agent.ts';
import type { PowerState } from '../../wire/vm.ts';

export interface VmState {
  state: PowerState;
  reason: string | null;
}

/** `reported` is null when the host answered and does not run the VM. */
export function reconcileVm(current: VmState, reported: AgentVm | null): VmState {
  if (reported) {
    switch (reported.state) {
      case 'running':
        return { state: 'running', reason: null };
      case 'paused':
        return { state: 'paused', reason: reported.reason };
      case 'shutdown':
      case 'stopped':
        return { state: 'stopped', reason: reported.reason };
      case 'crashed':
        return { state: 'crashed', reason: reported.reason };
    }
  }
  if (current.state === 'running' || current.state === 'paused' || current.state === 'unknown') {
    return { state: 'missing', reason: 'its host does not run it any more' };
  }
  return current;
}

/** The host cannot be reached: what ran there is unknown, what was stopped stays stopped. */
export function hostUnreachable(current: VmState, why: string): VmState {
  if (current.state === 'running' || current.state === 'paused') {
    return { state: 'unknown', reason: `host unreachable: ${why}` };
  }
  return current;
}
